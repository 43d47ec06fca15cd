"""2D radiographs on disk: one loader for PNG/JPEG (8/16-bit, grey or colour), resizing, and labelled records.

Legend: an image is a float32 array ``(H, W)`` in [0, 1]; ``labels`` is a float32 vector ``(L,)`` (1 positive,
0 negative, NaN unknown: CheXpert's "ignore" policy leaves uncertain labels unknown). The training sets read
images from the prepared cache (:class:`pcrl_lib.data.cache.ImageCacheDataset`), not one file per item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# PIL modes and the value that maps to white. Mode "I" is how Pillow opens 16-bit grey PNGs on some
# versions (others use "I;16"); radiographs never use the upper 16 bits, so 65535 is the right scale.
_GREY_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
               "I": 65535.0}
_COLOUR_MODES = ("RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr", "La", "RGBa")
# How an image is made to fit a target size: "resize" stretches it; "shorter_side" keeps the aspect ratio,
# scales it until it covers the target, then cuts out the centre (no anatomy squashed, the borders lost).
RESIZE_MODES = ("resize", "shorter_side")


def load_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG radiograph as float32 ``(H, W)`` in [0, 1].

    8-bit and 16-bit grey images are scaled by their full range (255 / 65535); colour and palette images
    (some NIH PNGs are RGBA) are converted to luminance; float images (mode "F", no white level) are
    stretched over their own range. An EXIF orientation tag (photos of films, some JPEG exports) is applied.
    Raises ``FileNotFoundError`` when ``path`` is missing and ``ValueError`` naming the file when it is
    corrupt, truncated or in an unsupported mode.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()  # decode now so a truncated file fails here, inside the try
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode == "F":
                array = np.asarray(image, dtype=np.float32)
                lo, hi = float(array.min()), float(array.max())
                return (array - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(array)
            if mode in _COLOUR_MODES:
                image = image.convert("L")
                mode = "L"
            if mode not in _GREY_SCALE:
                raise ValueError(f"{path}: unsupported image mode {mode!r}; save it as 8/16-bit grey or RGB")
            array = np.asarray(image, dtype=np.float32) / np.float32(_GREY_SCALE[mode])
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image (corrupt or truncated file?): {err}") from None
    return np.clip(array, 0.0, 1.0)


def resize_image(image: np.ndarray, size: int | tuple[int, int], mode: str = "resize") -> np.ndarray:
    """Bilinear resize of a float ``(H, W)`` image to ``size`` (an int gives a square ``(size, size)``) →
    float32 ``(height, width)``.

    ``mode="resize"`` stretches to ``size``; ``mode="shorter_side"`` keeps the aspect ratio: scale so the image
    covers ``size`` (for a square: the shorter side becomes ``size``), then crop the centre. PIL antialiases
    when shrinking.
    """
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if image.ndim != 2:
        raise ValueError(f"image must be a 2D (H, W) array, got shape {image.shape}")
    if image.shape == (height, width):
        return image.astype(np.float32, copy=False)
    h, w = image.shape
    if mode == "resize":
        new_h, new_w = height, width
    else:
        scale = max(height / h, width / w)
        new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    # PIL's "F" mode keeps float precision; it takes (width, height).
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (new_w, new_h), Image.Resampling.BILINEAR), dtype=np.float32)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.array(resized[top:top + height, left:left + width])  # a writable copy (PIL buffers are read-only)


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
