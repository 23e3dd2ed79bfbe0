"""Write masks as DICOM Segmentation objects over their source CT series (for clinical viewers).

A DICOM SEG (binary) holds one frame per source slice that has a segment there, each with its
plane position and a reference to its source image, in the source's frame of reference, so 3D
Slicer, OHIF and PACS viewers lay it over the CT it came from. It is made with ``highdicom``.

The mask comes on the volume's grid as :func:`covseg.io.read_volume` reads the series: array
``(i, j, k)`` = (column, row, slice), the slices in the order GDCM sorts the series' files
(:func:`covseg.io.dicom_series`), which is the order the source files are given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Segment:
    """One segment of a DICOM SEG: its label value in the mask and its coded meaning.

    Attributes
    ----------
    value
        The mask value that marks it (segment numbers follow the order given).
    label
        Short human-readable name (Segment Label).
    property_type
        (code value, coding scheme, code meaning) of the Segmented Property Type.
    """

    value: int
    label: str
    property_type: tuple[str, str, str]


#: The lesion (0/1 masks): SNOMED CT "Lesion".
LESION = Segment(1, "COVID-19 lesion", ("52988006", "SCT", "Lesion"))
#: The lesion classes of a class map (1 ground glass, 2 consolidation).
CLASSES = (
    Segment(1, "Ground-glass opacity", ("112120", "DCM", "Ground glass opacity")),
    Segment(2, "Consolidation", ("95436008", "SCT", "Lung consolidation")),
)


#: UIDs of an image and their copies in its file meta header.
_META_COPIES = (
    ("SOPClassUID", "MediaStorageSOPClassUID"),
    ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
)
#: Patient and study attributes a SEG copies from its source (Type 2: present, maybe empty).
_COPIED_TYPE_2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def write_dicom_seg(
    labels: npt.NDArray[np.generic],
    source_files: list[str] | list[Path],
    path: str | Path,
    segments: tuple[Segment, ...],
    description: str,
    algorithm: str = "covseg",
) -> Path:
    """Write ``labels`` as a binary DICOM SEG referencing the series in ``source_files``.

    Parameters
    ----------
    labels
        Integer mask ``(i, j, k)`` on the series' grid (columns, rows, slices), 0 background.
    source_files
        The series' files in slice order (:func:`covseg.io.dicom_series`).
    path
        The ``.dcm`` file to write.
    segments
        The segments, by mask value; values not listed are background.
    description
        Series Description of the SEG.
    algorithm
        Name of the algorithm that made the mask.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        When the mask's shape does not match the series (slices, rows, columns), or the series
        cannot carry a SEG (highdicom's check, e.g. slices of different frames of reference).
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import covseg

    sources = [pydicom.dcmread(str(f)) for f in source_files]
    missing = [k for k in ("FrameOfReferenceUID", "Modality") if k not in sources[0]]
    if missing:
        raise ValueError(
            f"{path}: the series of {source_files[0]} has no {' or '.join(missing)}, so a DICOM "
            "SEG cannot be placed on it"
        )
    for source in sources:
        meta = getattr(source, "file_meta", {})
        for keyword, copy in _META_COPIES:
            if not source.get(keyword) and meta.get(copy):
                # Some anonymisers blank it; the file meta header holds the same UID.
                setattr(source, keyword, meta.get(copy))
        # Type 2 patient and study attributes the SEG copies: anonymised series may lack them.
        for keyword in _COPIED_TYPE_2:
            if keyword not in source:
                setattr(source, keyword, "")
    shape = (int(sources[0].Columns), int(sources[0].Rows), len(sources))
    if labels.shape != shape:
        raise ValueError(
            f"{path}: mask shape {labels.shape} differs from the series' {shape} "
            "(columns, rows, slices)"
        )
    # One frame per source image, (rows, columns), values renumbered to segment numbers 1..n.
    frames = np.zeros((shape[2], shape[1], shape[0]), dtype=np.uint8)
    for number, segment in enumerate(segments, start=1):
        frames[np.transpose(labels, (2, 1, 0)) == segment.value] = number
    family = codes.cid7162.ArtificialIntelligence
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm, family=family, version=covseg.__version__
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=hd.sr.CodedConcept(*segment.property_type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
            anatomic_regions=[codes.SCT.Lung],
        )
        for number, segment in enumerate(segments, start=1)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="covseg",
            manufacturer_model_name=algorithm,
            software_versions=covseg.__version__,
            device_serial_number="none",
            series_description=description[:64],
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # highdicom checks the sources (same frame of reference, geometry, required attributes).
        message = f"cannot make a DICOM SEG over {source_files[0]}'s series ({exc})"
        raise ValueError(f"{path}: {message}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return path
