"""Unpacking a submission zip safely and checking each mask against its ground truth.

Nothing from the zip decides where a file is written: each member is matched to an expected
case id and written as ``<case>.nii[.gz]`` in a fresh folder, so ``../`` names cannot escape it.
Sizes are counted while decompressing, not taken from the zip's (forgeable) headers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from covseg.platform.services.challenges import case_id_of
from covseg.platform.services.errors import Invalid

_CHUNK = 1 << 20


def _member_case(name: str, expected: set[str]) -> str:
    """The case id a zip member holds, or raise with the reason it is not acceptable."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name:
        raise Invalid(f"{name}: paths may not leave the zip (absolute or '..')")
    case = case_id_of(path.name)
    if case is None:
        raise Invalid(f"{name}: not a NIfTI mask (.nii or .nii.gz)")
    if case not in expected:
        raise Invalid(f"{name}: {case!r} is not a case of this phase")
    return case


def unpack(
    zip_path: Path, expected: set[str], dest: Path, max_bytes: int, max_files: int
) -> dict[str, Path]:
    """Extract one mask per expected case from ``zip_path`` into ``dest``.

    Raises
    ------
    Invalid
        A non-zip, too many files or bytes (zip bomb), an unsafe or unknown name, a duplicate
        or a missing case: the message says which.
    """
    if not zipfile.is_zipfile(zip_path):
        raise Invalid("the upload is not a zip file")
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    total = 0
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > max_files:
                raise Invalid(f"the zip holds {len(members)} files; at most {max_files} allowed")
            for member in members:
                if PurePosixPath(member.filename).name.startswith("."):
                    continue  # hidden files added by some zip tools (.DS_Store)
                case = _member_case(member.filename, expected)
                if case in found:
                    raise Invalid(f"{member.filename}: case {case!r} appears more than once")
                target = dest / (case + (".nii.gz" if member.filename.endswith(".gz") else ".nii"))
                with zf.open(member) as src, target.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise Invalid(
                                f"the zip unpacks to more than {max_bytes / 1e6:.0f} MB "
                                "(limit on total uncompressed size)"
                            )
                        out.write(chunk)
                found[case] = target
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise Invalid(f"the zip file is damaged or unsupported: {exc}") from exc
    missing = sorted(expected - set(found))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise Invalid(f"{len(missing)} case(s) missing from the zip: {shown}")
    return found


def check_mask(pred_path: Path, truth_path: Path) -> str | None:
    """Why a predicted mask cannot be scored against its truth, or ``None`` when it can."""
    from covseg.io import VolumeReadError, read_volume

    try:
        pred = read_volume(pred_path)
    except (VolumeReadError, OSError, ValueError) as exc:
        return f"cannot read the mask: {exc}"
    truth = read_volume(truth_path)
    if pred.shape != truth.shape:
        return f"shape {pred.shape} differs from the image's {truth.shape}"
    if not pred.same_geometry(truth):
        return "geometry (spacing, origin or direction) differs from the image's"
    values = np.unique(np.asarray(pred.array))
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(str(v) for v in values[:6])
        return f"labels must be binary 0/1; found values {shown}"
    return None
