"""Unpacking a submission zip safely and checking each mask's header against its ground truth.

Nothing from the zip decides where a file is written: each member is matched to an expected
case id and written as ``<case>.nii[.gz]`` in a fresh folder, so ``../`` names cannot escape it.
Every limit is checked from the zip's central directory before a byte is extracted (number of
files, declared sizes, compression ratio, and per member the most a mask of its case can
need); extraction then streams with a running count, and Python's ``zipfile`` never returns
more than a member declares, so the declared sizes bound the bytes written. A mask is then
judged from its header alone (shape, affine, voxel type), by the scorer's grid rule: no voxel
is read before the header matches the truth's, so a 1 KB file that claims 1400^3 voxels costs
nothing.

:func:`screen` runs the same checks on an upload as it arrives (table of contents, and the
first 4 KB of each member for its header), so that a hostile or broken zip fails at once instead
of waiting in the queue; the worker's :func:`unpack` and :func:`check_header` check again, and
find what only a full read shows (damage deep inside a member).
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from covseg.platform.config import Settings
from covseg.platform.models import Phase
from covseg.platform.services.challenges import case_id_of
from covseg.platform.services.errors import Invalid

_CHUNK = 1 << 20
#: Slack over a raw mask's voxel bytes that a member may declare: NIfTI header and
#: extensions, and gzip's framing of incompressible data (a few bytes per 16 KiB block).
_HEADER_SLACK = 1 << 20
_GZIP_OVERHEAD = 1.01
#: Widest voxel a mask may be stored with (float64, int64): bounds the bytes a mask can hold.
MAX_ITEMSIZE = 8
#: Errors of reading (not writing) a damaged member, by the decompressor it uses.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class Reference:
    """What a predicted mask must match, read from the truth's header (no voxels).

    Attributes
    ----------
    shape
        Voxels along each axis.
    affine
        4 x 4 voxel-to-world matrix (mm).
    dtype
        The truth's voxel type (named in messages).
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    dtype: np.dtype

    @property
    def max_member_bytes(self) -> int:
        """The most bytes a mask file of this case can take unpacked (widest voxel type)."""
        voxels = int(np.prod(self.shape, dtype=np.int64))
        return int(voxels * MAX_ITEMSIZE * _GZIP_OVERHEAD) + _HEADER_SLACK


def read_reference(truth_path: Path) -> Reference:
    """The header of a ground-truth mask (the organizer's file; errors here are the server's)."""
    import nibabel as nib

    img = nib.load(str(truth_path))
    return Reference(
        tuple(int(n) for n in img.shape),  # type: ignore[attr-defined]
        np.asarray(img.affine, dtype=np.float64),  # type: ignore[attr-defined]
        np.dtype(img.get_data_dtype()),  # type: ignore[attr-defined]
    )


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


def _open(zip_path: Path) -> zipfile.ZipFile:
    """The upload as a zip, or refuse it."""
    if not zipfile.is_zipfile(zip_path):
        raise Invalid("the upload is not a zip file")
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise Invalid("the archive is damaged (its table of contents cannot be read)") from exc


def _open_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return zf.open(member)
    except NotImplementedError as exc:
        raise Invalid(f"{member.filename}: compressed with a method covseg cannot read") from exc
    except _READ_ERRORS as exc:
        raise Invalid(f"the archive is damaged: {member.filename}") from exc


def _read(src: IO[bytes], name: str, size: int) -> bytes:
    """Up to ``size`` bytes of a member; any decompression or checksum error means damage."""
    try:
        return src.read(size)
    except _READ_ERRORS as exc:
        raise Invalid(f"the archive is damaged: {name}") from exc


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _plan(
    zf: zipfile.ZipFile,
    references: dict[str, Reference],
    max_bytes: int,
    max_files: int,
    max_ratio: float,
) -> dict[str, zipfile.ZipInfo]:
    """Match members to cases and check every limit from the central directory alone."""
    members = [m for m in zf.infolist() if not m.is_dir()]
    if len(members) > max_files:
        raise Invalid(f"the zip holds {len(members)} files; at most {max_files} allowed")
    plan: dict[str, zipfile.ZipInfo] = {}
    for member in members:
        if PurePosixPath(member.filename).name.startswith("."):
            continue  # hidden files added by some zip tools (.DS_Store)
        case = _member_case(member.filename, set(references))
        if case in plan:
            raise Invalid(f"{member.filename}: case {case!r} appears more than once")
        if member.flag_bits & 0x1:
            raise Invalid(f"{member.filename}: encrypted; zip the masks without a password")
        cap = references[case].max_member_bytes
        if member.file_size > cap:
            raise Invalid(
                f"{member.filename}: declares {_mb(member.file_size)} unpacked, more than a mask "
                f"of {references[case].shape} voxels can take ({_mb(cap)})"
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _CHUNK and ratio > max_ratio:
            raise Invalid(
                f"{member.filename}: expands {ratio:.0f} times; at most {max_ratio:.0f} allowed "
                "(limit on the compression ratio)"
            )
        plan[case] = member
    declared = sum(m.file_size for m in plan.values())
    if declared > max_bytes:
        raise Invalid(
            f"the zip unpacks to {_mb(declared)}, more than {_mb(max_bytes)} "
            "(limit on total uncompressed size)"
        )
    missing = sorted(set(references) - set(plan))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise Invalid(f"{len(missing)} case(s) missing from the zip: {shown}")
    return plan


def unpack(
    zip_path: Path,
    references: dict[str, Reference],
    dest: Path,
    max_bytes: int,
    max_files: int,
    max_ratio: float = float("inf"),
    alive: Callable[[], None] | None = None,
) -> dict[str, tuple[Path, str]]:
    """Extract one mask per expected case from ``zip_path`` into ``dest``.

    Parameters
    ----------
    zip_path
        The upload.
    references
        The expected cases and their truth headers (which bound each member's size).
    dest
        A fresh folder to write ``<case>.nii[.gz]`` files into.
    max_bytes, max_files, max_ratio
        Limits on the total unpacked bytes, the number of members and each member's
        compression ratio (members over 1 MB).
    alive
        Called after every MB written (heartbeat; it may raise to abandon the work).

    Returns
    -------
    dict
        Case id to (written file, member name as the participant named it).

    Raises
    ------
    Invalid
        A non-zip, a damaged archive or member (``the archive is damaged: MEMBER``), too many
        files or bytes (zip bomb), an unsafe or unknown name, a duplicate or a missing case:
        the message says which.
    """
    zf = _open(zip_path)
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, tuple[Path, str]] = {}
    total = 0
    with zf:
        plan = _plan(zf, references, max_bytes, max_files, max_ratio)
        for case, member in sorted(plan.items()):
            name = member.filename
            target = dest / (case + (".nii.gz" if name.endswith(".gz") else ".nii"))
            with target.open("wb") as out, _open_member(zf, member) as src:
                while chunk := _read(src, name, _CHUNK):
                    total += len(chunk)
                    if total > max_bytes:  # unreachable while zipfile honours the sizes
                        raise Invalid(f"the zip unpacks to more than {_mb(max_bytes)}")
                    out.write(chunk)
                    if alive is not None:
                        alive()
            found[case] = (target, name)
    return found


def _judge(
    shape: tuple[int, ...], affine: np.ndarray, dtype: np.dtype, reference: Reference
) -> str | None:
    """Why a mask with this header cannot be scored against ``reference``, or ``None``.

    The grid rule is the scorer's own (:func:`covseg.io.to_reference_grid`: the same voxels,
    possibly in another axis order or direction), applied to arrays of a zero-byte type, so the
    header's shape costs no memory whatever it claims (and the server imports no scipy).
    """
    from covseg.io import GridMismatchError, Volume, to_reference_grid

    if dtype.kind not in "biuf" or dtype.itemsize > MAX_ITEMSIZE or dtype.fields is not None:
        return (
            f"voxel type {dtype} is not a mask type (integers or floats up to 8 bytes; "
            f"the truth is {reference.dtype})"
        )
    nothing = np.zeros((), dtype=np.dtype([]))  # itemsize 0
    ours = Volume(np.broadcast_to(nothing, shape), affine)
    truth = Volume(np.broadcast_to(nothing, reference.shape), reference.affine)
    try:
        to_reference_grid(ours, truth, reference_name="the truth")
    except GridMismatchError as exc:
        return str(exc)
    return None


def check_header(pred_path: Path, reference: Reference) -> str | None:
    """Why a mask file cannot be scored against its truth, judged from its header alone.

    Returns ``None`` when shape, geometry (spacing, origin, direction) and voxel type fit; the
    voxels are read later, under the evaluation's memory limit. The message names no path.
    """
    import nibabel as nib

    try:
        img = nib.load(str(pred_path))
        shape = tuple(int(n) for n in img.shape)  # type: ignore[attr-defined]
        affine = np.asarray(img.affine, dtype=np.float64)  # type: ignore[attr-defined]
        dtype = np.dtype(img.get_data_dtype())  # type: ignore[attr-defined]
    except nib.filebasedimages.ImageFileError:
        return f"{_UNREADABLE} (not a NIfTI file)"
    except Exception as exc:  # nibabel raises many types for a broken header
        return f"{_UNREADABLE} ({_first_line(exc).replace(str(pred_path), 'the file')})"
    return _judge(shape, affine, dtype, reference)


_UNREADABLE = "cannot read the mask's NIfTI header"
#: Bytes of a member read when screening: a gzipped NIfTI-2 header fits many times over.
_HEAD = 4096


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def _header_of(head: bytes, gzipped: bool) -> str | tuple[tuple[int, ...], np.ndarray, np.dtype]:
    """Shape, affine and voxel type from a mask file's first bytes, or why they cannot be read."""
    import nibabel as nib

    raw = head
    if gzipped:
        try:
            raw = zlib.decompressobj(wbits=31).decompress(head, 1024)
        except zlib.error:
            return f"{_UNREADABLE} (not a gzip file)"
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        if len(raw) >= size and klass.may_contain_header(raw[:size]):
            try:
                header = klass(raw[:size], check=True)
                shape = tuple(int(n) for n in header.get_data_shape())
                affine = np.asarray(header.get_best_affine(), dtype=np.float64)
                return shape, affine, np.dtype(header.get_data_dtype())
            except Exception as exc:  # nibabel's header checks raise several types
                return f"{_UNREADABLE} ({_first_line(exc)})"
    return f"{_UNREADABLE} (not a NIfTI file)"


def checks_message(errors: dict[str, str]) -> str:
    """One line for masks that failed the checks: how many, and the first with its reason."""
    case, error = next(iter(sorted(errors.items())))
    return f"{len(errors)} case(s) failed the checks, e.g. {case}: {error}"


def screen(
    zip_path: Path,
    references: dict[str, Reference],
    max_bytes: int,
    max_files: int,
    max_ratio: float = float("inf"),
) -> str | None:
    """Why an upload can be failed at once, or ``None`` when it goes on to a worker.

    Reads the zip's table of contents and the first 4 KB of each member: every limit of
    :func:`unpack`, damage at the start of a member, and every mask header. Milliseconds for
    any upload, so the web request does it and a hostile zip never waits in the queue.
    """
    try:
        zf = _open(zip_path)
        with zf:
            plan = _plan(zf, references, max_bytes, max_files, max_ratio)
            errors: dict[str, str] = {}
            for case, member in sorted(plan.items()):
                with _open_member(zf, member) as src:
                    head = _read(src, member.filename, _HEAD)
                found = _header_of(head, member.filename.endswith(".gz"))
                problem = found if isinstance(found, str) else _judge(*found, references[case])
                if problem is not None:
                    errors[case] = problem
    except Invalid as exc:
        return str(exc)
    return checks_message(errors) if errors else None


def screen_upload(settings: Settings, phase: Phase, zip_path: Path) -> str | None:
    """:func:`screen` an upload to ``phase`` with the platform's limits."""
    references = {
        case.case_id: read_reference(settings.data_dir / case.truth_path) for case in phase.cases
    }
    return screen(
        zip_path,
        references,
        settings.max_unzipped_bytes,
        settings.max_zip_files,
        settings.max_zip_ratio,
    )
