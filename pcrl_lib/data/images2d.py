"""2D radiographs on disk: one loader for PNG/JPEG (8/16-bit, grey or colour) and a classification Dataset.

Legend: an image is a float32 array ``(H, W)`` in [0, 1]; a batch item is a ``(1, H, W)`` tensor; ``labels``
is a float32 vector ``(L,)`` (1 positive, 0 negative) with a boolean ``mask`` ``(L,)`` saying which labels are
known (CheXpert's "ignore" policy leaves uncertain labels unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

# PIL modes and the value that maps to white. Mode "I" is how Pillow opens 16-bit grey PNGs on some
# versions (others use "I;16"); radiographs never use the upper 16 bits, so 65535 is the right scale.
_GREY_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
               "I": 65535.0}
_COLOUR_MODES = ("RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr", "La", "RGBa")


def load_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG radiograph as float32 ``(H, W)`` in [0, 1].

    8-bit and 16-bit grey images are scaled by their full range (255 / 65535); colour and palette images
    (some NIH PNGs are RGBA) are converted to luminance. Raises ``FileNotFoundError`` when ``path`` is
    missing and ``ValueError`` naming the file when it is corrupt, truncated or in an unsupported mode.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()  # decode now so a truncated file fails here, inside the try
            mode = image.mode
            if mode in _COLOUR_MODES:
                image = image.convert("L")
                mode = "L"
            if mode not in _GREY_SCALE:
                raise ValueError(f"{path}: unsupported image mode {mode!r}; save it as 8/16-bit grey or RGB")
            array = np.asarray(image, dtype=np.float32) / np.float32(_GREY_SCALE[mode])
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image (corrupt or truncated file?): {err}") from None
    return np.clip(array, 0.0, 1.0)


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float ``(H, W)`` image to ``size`` (an int gives a square ``(size, size)``)."""
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if image.shape == (height, width):
        return image.astype(np.float32, copy=False)
    # PIL's "F" mode keeps float precision; it takes (width, height).
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.float32)  # a writable copy (PIL buffers are read-only)


@dataclass(frozen=True)
class ImageRecord:
    """One labelled 2D image: file, label vector ``(L,)`` (NaN = unknown), patient id (for patient-level splits)."""

    path: Path
    labels: np.ndarray = field(repr=False)
    patient: str

    @property
    def mask(self) -> np.ndarray:
        """``(L,)`` bool: True where the label is known."""
        return ~np.isnan(self.labels)


class ClassificationDataset:
    """A torch-style Dataset over :class:`ImageRecord` s for multi-label classification.

    ``dataset[i]`` is a dict: ``image`` float32 tensor ``(1, H, W)`` in [0, 1] (resized to ``size`` when
    given, then passed through ``transform``), ``labels`` float32 ``(L,)`` with unknown labels set to 0,
    ``mask`` bool ``(L,)`` (False where unknown) and ``patient`` (str).
    """

    def __init__(self, records: Sequence[ImageRecord], size: int | tuple[int, int] | None = None,
                 transform: Callable | None = None):
        if len(records) == 0:
            raise ValueError("records is empty: no images to build a dataset from")
        widths = {len(r.labels) for r in records}
        if len(widths) != 1:
            raise ValueError(f"records carry label vectors of different lengths {sorted(widths)}")
        self.records = list(records)
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        import torch

        record = self.records[index]
        image = load_image(record.path)
        if self.size is not None:
            image = resize_image(image, self.size)
        tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
        if self.transform is not None:
            tensor = self.transform(tensor)
        known = record.mask
        labels = np.where(known, record.labels, 0.0).astype(np.float32)
        return {"image": tensor, "labels": torch.from_numpy(labels), "mask": torch.from_numpy(known),
                "patient": record.patient}

    @property
    def label_matrix(self) -> np.ndarray:
        """``(N, L)`` float32 label matrix of all records (NaN = unknown), e.g. for class frequencies."""
        return np.stack([r.labels for r in self.records]).astype(np.float32)
