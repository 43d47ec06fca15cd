"""Real demo data from the package registry: small, real medical images for the quick/smoke profiles.

DEMO DATA, NOT BENCHMARKS: a handful of real images, enough to see every reader, transform and model
run on real anatomy on a laptop CPU; far too few for any reported result. Fetch once (needs the package
registry; ~200 MB download, ~60 MB kept)::

    python -m pcrl_lib.data.demo fetch        # or pcrl_lib.data.demo.fetch()
    python -m pcrl_lib.data.demo describe     # what is there, licences, pseudo-label notes

Demo sets (see :func:`describe`): :func:`xray_images` / :func:`load_xray` (16 paediatric radiographs,
NORMAL vs PNEUMONIA), :func:`dicom_radiograph` (adult CR, MONOCHROME1), :func:`nih_label_table` (NIH
ChestX-ray14 labels, no images), :func:`chest_cts` + :func:`nodule_demo` (chest CTs with lesion masks,
lesion vs parenchyma cubes), :func:`liver_ct` (abdominal CT with a liver PSEUDO-LABEL from a model),
:func:`brain_mris` (brain MRIs with tumour masks).
"""

from .ct import LIVER_LABEL, ChestCT, chest_cts, liver_ct, resample_onto
from .fetching import (DamagedCacheError, DemoFetchError, HashMismatchError, Manifest, ManifestEntry, RegistryError,
                       default_cache, fetch, load_manifest)
from .mri import BrainMRI, brain_mris
from .nodules import CubeSet, cut_cubes, lesion_centres, lung_parenchyma_mask, nodule_cubes, nodule_demo
from .sources import SOURCES, Member, Source
from .summary import counts, describe
from .xray import LABELS, XRayRecord, dicom_radiograph, load_xray, nih_label_table, parse_xray_name, xray_images

__all__ = [
    "BrainMRI", "ChestCT", "CubeSet", "DamagedCacheError", "DemoFetchError", "HashMismatchError", "LABELS", "LIVER_LABEL", "Manifest",
    "ManifestEntry", "Member", "RegistryError", "SOURCES", "Source", "XRayRecord", "brain_mris", "chest_cts",
    "counts", "cut_cubes", "default_cache", "describe", "dicom_radiograph", "fetch", "lesion_centres",
    "liver_ct", "load_manifest", "load_xray", "lung_parenchyma_mask", "nih_label_table", "nodule_cubes",
    "nodule_demo", "parse_xray_name", "resample_onto", "xray_images",
]
