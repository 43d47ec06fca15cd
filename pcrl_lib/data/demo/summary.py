"""What the demo data holds: counts per demo set and a printable summary with provenance."""

from __future__ import annotations

import gzip
import os

from .fetching import load_manifest
from .sources import PSEUDO_LABELS
from .xray import parse_xray_name


def counts(cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Items per demo set, from the manifest (volumes are not loaded; the NIH table's rows are counted)."""
    manifest = load_manifest(cache_dir)
    labels = [parse_xray_name(key.rsplit("/", 1)[-1])[0] for key in manifest.keys("xray_pneumonia/")]
    with gzip.open(manifest.path("nih_chestxray14/Data_Entry_2017_v2020.csv.gz"), "rt") as table:
        nih_rows = sum(1 for _ in table) - 1  # minus the header line
    return {
        "xray_images": len(labels),
        "xray_normal": labels.count("NORMAL"),
        "xray_pneumonia": labels.count("PNEUMONIA"),
        "dicom_radiographs": len(manifest.keys("dicom_radiograph/")),
        "nih_label_rows": nih_rows,
        "chest_cts": len(manifest.keys("pyradiomics/lung")) // 2 + len(manifest.keys("totalsegmentator/chest_cta")),
        "chest_ct_lesion_masks": len(manifest.keys("pyradiomics/lung")) // 2,
        "liver_cts": len(manifest.keys("totalsegmentator/abdomen_seg")),
        "liver_dicom_slices": len(manifest.keys("totalsegmentator/abdomen_ct_dicom/")),
        "brain_mris": len(manifest.keys("pyradiomics/brain")) // 2,
    }


def describe(cache_dir: str | os.PathLike | None = None) -> str:
    """A printable summary: each demo set, its size, source, licence, and which labels are pseudo-labels."""
    manifest = load_manifest(cache_dir)
    n = counts(cache_dir)
    lines = [
        f"PCRL kit DEMO data at {manifest.root}: real but tiny, for learning and tests only "
        f"(never for reported results); {len(manifest.entries)} files, {manifest.size_bytes / 2**20:.1f} MiB",
        f"  xray_images()       {n['xray_images']} paediatric chest radiographs, JPEG "
        f"({n['xray_normal']} NORMAL, {n['xray_pneumonia']} PNEUMONIA)",
        f"  dicom_radiograph()  {n['dicom_radiographs']} adult PA chest radiograph, DICOM CR MONOCHROME1",
        f"  nih_label_table()   NIH ChestX-ray14 label table, {n['nih_label_rows']:,} rows, no images",
        f"  chest_cts()         {n['chest_cts']} chest CTs in HU, {n['chest_ct_lesion_masks']} with lesion masks "
        "(lung1 ~14 mm nodule, lung2 ~45 mm mass) + 1 CT angiography without mask",
        f"  liver_ct()          {n['liver_cts']} abdominal CTs (NIfTI 3 mm; DICOM series of "
        f"{n['liver_dicom_slices']} slices) with liver masks: PSEUDO-LABELS FROM A MODEL",
        f"  brain_mris()        {n['brain_mris']} brain MRIs (one sequence each) with tumour masks",
        "Sources (package==version: licence; attribution):",
    ]
    seen = set()
    for entry in manifest.entries:
        if entry.package not in seen:
            seen.add(entry.package)
            lines.append(f"  {entry.package}=={entry.version}: {entry.licence}; {entry.attribution}")
    pseudo = sorted({e.local_path for e in manifest.entries if e.note == PSEUDO_LABELS})
    lines.append("Pseudo-labels (model output, not expert annotation): " + ", ".join(pseudo))
    return "\n".join(lines)
