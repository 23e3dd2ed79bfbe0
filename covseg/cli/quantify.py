"""``covseg quantify``: lesion burden per scan (JSON, CSV, overlay PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from covseg.cli._app import app, fail

_NO_MASK = (
    "no lesion mask given: the lesions come from a segmentation model (covseg predict); "
    "give CT LESION_MASK, a dataset folder with labels, or CTs with --masks DIR"
)


@app.command()
def quantify(
    inputs: list[Path] = typer.Argument(
        ...,
        help="CT and its LESION_MASK; or a dataset folder (CTs with labels); or CTs with --masks.",
        metavar="CT [LESION_MASK]",
        show_default=False,
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    masks: Path | None = typer.Option(
        None, "--masks", help="Folder of lesion masks named by case id (e.g. predictions)."
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
    consolidation, below as ground glass. A scan that fails (not in HU, other geometry, no lungs)
    is reported on one line; the others go on, and the exit code is 1.

    Example: covseg quantify case-0003_ct.nii.gz case-0003_seg.nii.gz -o out/
    """
    import json

    import pandas as pd
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import track

    from covseg.quantify import KEYS

    try:
        jobs = _jobs(inputs, masks)
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
            if mask_path is None:
                where = f"no lesion mask for {case_id} in {masks}" if masks else _NO_MASK
                raise ValueError(f"{ct_path}: {where}")
            record = _one(case_id, ct_path, mask_path, output, overlay, save_lung)
        except ValueError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
            rows.append({"case": case_id, "ct": str(ct_path), "error": str(exc)})
            continue
        (output / f"{case_id}.json").write_text(json.dumps(record, indent=2) + "\n")
        rows.append({"case": case_id, "ct": str(ct_path), **record, "error": ""})
    table = pd.DataFrame(rows, columns=["case", "ct", *KEYS, "error"])
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


def _jobs(inputs: list[Path], masks: Path | None) -> list[tuple[str, Path, Path | None]]:
    """(case id, CT, lesion mask or None) for each scan the arguments name."""
    from covseg.datasets import case_id_from_filename, files_by_case, find_cases

    for path in inputs:
        if not path.exists():
            raise ValueError(f"{path}: no such file or folder")
    if masks is None and len(inputs) == 2 and inputs[1].is_file():
        # CT (a file, or a folder holding one DICOM series) and its lesion mask.
        return [(case_id_from_filename(inputs[0]), inputs[0], inputs[1])]
    if masks is None and len(inputs) == 1 and inputs[0].is_file():
        raise ValueError(f"{inputs[0]}: {_NO_MASK}")
    if masks is None and not all(p.is_dir() for p in inputs):
        raise ValueError(f"{inputs[0]}: several CTs need --masks DIR; {_NO_MASK}")
    jobs: list[tuple[str, Path, Path | None]] = []
    for path in inputs:
        if path.is_dir():
            jobs += [(c.case_id, c.image, c.label) for c in find_cases(path) if c.image]
        else:
            jobs.append((case_id_from_filename(path), path, None))
    if masks is not None:
        if not masks.is_dir():
            raise ValueError(f"{masks}: no such folder")
        found = files_by_case(masks)
        jobs = [(cid, ct, next(iter(found.get(cid, [])), None)) for cid, ct, _ in jobs]
    return jobs


def _one(
    case_id: str, ct_path: Path, mask_path: Path, output: Path, overlay: bool, save_lung: bool
) -> dict[str, Any]:
    """Quantify one scan, writing its overlay (and lung mask); ValueError names the bad file."""
    from covseg.io import read_volume, to_reference_grid, write_mask
    from covseg.lung import check_hu, lung_mask
    from covseg.quantify import quantify, write_overlay

    ct = read_volume(ct_path)
    check_hu(ct, ct_path)
    # Same grid in another axis order (a mask from another tool): reoriented exactly.
    lesion = to_reference_grid(read_volume(mask_path), ct, path=mask_path, reference_name="the CT")
    lungs = lung_mask(ct, ct_path)
    record = quantify(ct, lesion.array, lungs)
    if overlay:
        title = f"{case_id}: lesion {record['lesion_ml']:.1f} mL, {record['involvement_pct']:.1f} %"
        write_overlay(ct, lesion.array, lungs, output / f"{case_id}_overlay.png", title)
    if save_lung:
        write_mask(lungs.array, ct, output / f"{case_id}_lung.nii.gz")
    return record
