"""``covseg phantom``: write a synthetic chest-CT dataset in the COVID-19-20 layout."""

from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command()
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the dataset into."),
    train: int = typer.Option(4, "--train", help="Training cases (source A)."),
    validation: int = typer.Option(2, "--validation", help="Validation cases (source A)."),
    test_seen: int = typer.Option(2, "--test-seen", help="Test cases from the seen source A."),
    test_unseen: int = typer.Option(
        2, "--test-unseen", help="Test cases from the unseen source B."
    ),
    size: int = typer.Option(128, "--size", help="In-plane matrix (512 = full resolution)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Write synthetic chest CTs with COVID-19-like lesions, lesion masks and lung masks.

    Train/ and Validation/ hold source-A cases (0.74 x 0.74 x 5 mm at 512).
    Test/ holds the seen (A), then the unseen (B, 0.8 x 0.8 x 1.25 mm) cases.
    Each case is <case>_ct.nii.gz (HU) and <case>_seg.nii.gz (lesions 0/1).
    Lung masks (1 right, 2 left) go to lungs/<case>_lung.nii.gz.

    Example: ``covseg phantom -o data/phantoms --train 8 --size 128``
    """
    counts = {"--train": train, "--validation": validation, "--test-seen": test_seen}
    counts["--test-unseen"] = test_unseen
    for option, n in counts.items():
        if n < 0:
            raise fail(f"{option} must not be negative, got {n}")
    if sum(counts.values()) == 0:
        raise fail("nothing to write: every case count is 0")
    if size < 16:
        raise fail(f"--size must be at least 16, got {size}")
    if out.exists() and not out.is_dir():
        raise fail(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise fail(f"{out} is not empty (use --overwrite to write into it)")

    from covseg.phantom import write_dataset

    written = write_dataset(
        out,
        n_train=train,
        n_validation=validation,
        n_test_seen=test_seen,
        n_test_unseen=test_unseen,
        size=size,
        seed=seed,
        progress=True,
    )
    typer.echo(f"wrote {len(written)} cases to {out}")
