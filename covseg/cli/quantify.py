"""``covseg quantify``: lesion burden per scan (JSON, CSV, overlay PNG)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from covseg.cli._app import app, fail

if TYPE_CHECKING:
    from covseg.io import Volume


@app.command()
def quantify(
    inputs: list[Path] = typer.Argument(
        ...,
        help=(
            "CT and its LESION_MASK (or -m MODEL; or nothing: the lungs alone); a dataset folder; "
            "or CTs with --masks."
        ),
        metavar="CT [LESION_MASK]",
        show_default=False,
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    masks: Path | None = typer.Option(
        None, "--masks", help="Folder of lesion masks named by case id (e.g. predictions)."
    ),
    model: Path | None = typer.Option(
        None, "-m", "--model", help="Segment the lesions with this model folder, then quantify."
    ),
    label: int | None = typer.Option(
        None, "--label", help="The lesion's value in a multi-label mask (other values: not lesion)."
    ),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write the overlay PNG."),
    save_lung: bool = typer.Option(False, "--save-lung", help="Write <case>_lung.nii.gz too."),
) -> None:
    """Lesion burden: lesion and lung volumes (mL), % of each lung involved, severity 0-5.

    Writes OUT/<case>.json (keys: lesion_ml, lung_ml, left_lung_ml, right_lung_ml,
    involvement_pct, left_involvement_pct, right_involvement_pct, lesion_count,
    largest_lesion_ml, ggo_ml, consolidation_ml, left_severity, right_severity; left and right
    are the patient's), OUT/<case>_overlay.png (axial and coronal slices through the largest
    lesion) and OUT/quantify.csv (one row per scan). Lesion voxels of -200 HU or more count as
    consolidation, below as ground glass. The lesions come from a 0/1 mask (a multi-label mask
    needs --label N), or from a model (-m: segment, then quantify); with neither, the lungs alone
    are measured (lesion keys null, and a note). A single DICOM file's case id keeps its folder
    (A046441/19010101-23.dcm: A046441_19010101-23). A scan that fails (not in HU, other
    geometry, no lungs, a multi-label mask) is reported on one line; the others go on, and the
    exit code is 1.

    Example: covseg quantify case-0003_ct.nii.gz case-0003_seg.nii.gz -o out/
    """
    import json

    import pandas as pd
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import track

    from covseg.quantify import KEYS

    try:
        if model is not None and masks is not None:
            raise ValueError(f"{model}: give either -m MODEL or --masks DIR, not both")
        jobs = _jobs(inputs, masks, with_model=model is not None)
        segmenter = None if model is None else _segmenter(model)
    except ValueError as exc:
        raise fail(str(exc)) from None
    output.mkdir(parents=True, exist_ok=True)
    err = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    record: dict[str, Any] = {}
    for case_id, ct_path, mask_path in track(
        jobs, description="quantify", disable=len(jobs) < 2, console=err
    ):
        try:
            if mask_path is None and masks is not None:
                raise ValueError(f"{ct_path}: no lesion mask for {case_id} in {masks}")
            record = _one(case_id, ct_path, mask_path, output, overlay, save_lung, label, segmenter)
        except ValueError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
            rows.append({"case": case_id, "ct": str(ct_path), "error": str(exc)})
            continue
        (output / f"{case_id}.json").write_text(json.dumps(record, indent=2) + "\n")
        rows.append({"case": case_id, "ct": str(ct_path), "note": "", **record, "error": ""})
    table = pd.DataFrame(rows, columns=["case", "ct", *KEYS, "note", "error"])
    # Counts and grades stay integers in the CSV when a failed scan leaves them empty.
    table = table.astype(
        {"lesion_count": "Int64", "left_severity": "Int64", "right_severity": "Int64"}
    )
    table.to_csv(output / "quantify.csv", index=False)
    console = Console()
    if len(jobs) == 1 and record:
        console.print_json(json.dumps(record))
    failed = int((table["error"] != "").sum())
    console.print(
        f"{len(jobs) - failed} of {len(jobs)} scans quantified; wrote {output}/quantify.csv",
        soft_wrap=True,
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


def _jobs(
    inputs: list[Path], masks: Path | None, with_model: bool = False
) -> list[tuple[str, Path, Path | None]]:
    """(case id, CT, lesion mask or None) for each scan the arguments name."""
    from covseg.datasets import DatasetError, files_by_case, find_cases, scan_case_id

    for path in inputs:
        if not path.exists():
            raise ValueError(f"{path}: no such file or folder")
    if masks is None and not with_model and len(inputs) == 2 and inputs[1].is_file():
        # CT (a file, or a folder holding one DICOM series) and its lesion mask.
        return [(scan_case_id(inputs[0]), inputs[0], inputs[1])]
    jobs: list[tuple[str, Path, Path | None]] = []
    for path in inputs:
        try:
            cases = find_cases(path) if path.is_dir() else []
        except DatasetError:
            cases = []  # not a dataset folder: a DICOM series
        if any(c.image for c in cases):
            jobs += [(c.case_id, c.image, c.label) for c in cases if c.image]
        else:  # a file, or a folder holding one DICOM series
            jobs.append((scan_case_id(path), path, None))
    if with_model:
        jobs = [(cid, ct, None) for cid, ct, _ in jobs]  # the model's lesions, not the labels
    if masks is not None:
        if not masks.is_dir():
            raise ValueError(f"{masks}: no such folder")
        found = files_by_case(masks)
        jobs = [(cid, ct, next(iter(found.get(cid, [])), None)) for cid, ct, _ in jobs]
    return jobs


#: A model applied to a CT: its lesion mask and, for a model with classes, the class map (0/1/2).
Segmenter = Callable[["Volume", Path], tuple["Volume", "Volume | None"]]


def _segmenter(model: Path) -> Segmenter:
    """A function (CT, its path) -> lesion mask from a model folder.

    Hook for ``-m MODEL``: a 3D model (``covseg train --preset baseline|auto``) segments in
    process, as ``covseg predict`` does; a slices-2d model segments the CT's thorax slices one by
    one (:func:`covseg.model.slices2d.volume.segment_volume`).
    """
    from covseg.model.plan import PlanError, pipeline_of, read_plan

    try:
        plan = read_plan(model)
        slices = pipeline_of(plan) == "slices-2d"
    except PlanError as exc:
        raise ValueError(str(exc)) from None
    if slices:
        from covseg.model.slices2d.predict import load_ensemble
        from covseg.model.slices2d.volume import segment_volume

        ensemble = load_ensemble(model)

        def slice_by_slice(ct: Volume, path: Path) -> tuple[Volume, Volume | None]:
            result = segment_volume(ct, ensemble, path)
            return result.lesion, result.classes

        return slice_by_slice
    from covseg.model.inference import load_models
    from covseg.model.predict import segment

    nets = load_models(model, plan)

    def run(ct: Volume, path: Path) -> tuple[Volume, Volume | None]:
        return segment(ct, nets, plan, path=path).mask, None

    return run


def _one(
    case_id: str,
    ct_path: Path,
    mask_path: Path | None,
    output: Path,
    overlay: bool,
    save_lung: bool,
    label: int | None = None,
    segmenter: Segmenter | None = None,
) -> dict[str, Any]:
    """Quantify one scan, writing its overlay (and lung mask); ValueError names the bad file.

    The lesion comes from ``mask_path``, else from ``segmenter``; with neither, the lungs alone.
    """
    import numpy as np

    from covseg.io import read_volume, to_reference_grid, write_mask
    from covseg.lung import check_hu, lung_mask
    from covseg.quantify import (
        LUNGS_ONLY_NOTE,
        lesion_from_labels,
        quantify,
        split_method,
        write_overlay,
    )

    ct = read_volume(ct_path)
    check_hu(ct, ct_path)
    lesion, classes = None, None
    if mask_path is not None:
        # Same grid in another axis order (a mask from another tool): reoriented exactly.
        mask = to_reference_grid(
            read_volume(mask_path), ct, path=mask_path, reference_name="the CT"
        )
        lesion = lesion_from_labels(mask.array, mask_path, label)
    elif segmenter is not None:
        mask_volume, class_volume = segmenter(ct, ct_path)
        lesion = mask_volume.array != 0
        classes = None if class_volume is None else class_volume.array
    lungs = lung_mask(ct, ct_path)
    record: dict[str, Any] = dict(quantify(ct, lesion, lungs, classes))
    if lesion is None:
        record["note"] = LUNGS_ONLY_NOTE
    else:
        record["ggo_split"] = split_method(classes)
    if overlay:
        burden = (
            "lungs only"
            if lesion is None
            else f"lesion {record['lesion_ml']:.1f} mL, {record['involvement_pct']:.1f} %"
        )
        shown = np.zeros(ct.shape, bool) if lesion is None else lesion
        write_overlay(ct, shown, lungs, output / f"{case_id}_overlay.png", f"{case_id}: {burden}")
    if save_lung:
        write_mask(lungs.array, ct, output / f"{case_id}_lung.nii.gz")
    return record
