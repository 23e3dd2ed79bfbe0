"""Hostile and careless uploads cost the platform nothing (issue 22, items 2, 3, 9 and 10).

Each test plays one probe of the issue: a NIfTI header that claims 1400^3 voxels, masks that
need more memory or time than an evaluation may use, corrupt deflate data, zip bombs, server
paths in messages, and a worker left running after its server stopped.
"""

from __future__ import annotations

import gc
import gzip
import io
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import psutil
import pytest
import test_platform_support as support
from sqlalchemy import update
from test_platform_support import (
    CASES,
    Platform,
    build_platform,
    evaluate,
    good_zip,
    make_zip,
    nifti_bytes,
    truth_mask,
)

from covseg.platform.models import Submission, SubmissionStatus, utcnow
from covseg.platform.sandbox import thread_sandbox
from covseg.platform.services import evaluation
from covseg.platform.services.errors import Invalid
from covseg.platform.services.uploads import Reference, unpack
from covseg.platform.tasks import make_queue

CLI = [sys.executable, "-c", "from covseg.cli import main; main()"]
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
SHAPE_J = 16  # voxels along the second axis of the tiny challenge's masks


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    """The tiny challenge (16 x 16 x 4 masks) on SQLite."""
    return build_platform(tmp_path)


def submit(p: Platform, data: bytes, email: str = "alice@example.org") -> int:
    """Upload ``data`` as ``email``'s team into the validation phase."""
    return support.submit(p, email, data)


def case_files(**override: bytes) -> dict[str, bytes]:
    """Every case's mask, equal to its truth, with some members replaced."""
    files = {f"{c}.nii.gz": nifti_bytes(truth_mask(i)) for i, c in enumerate(sorted(CASES))}
    files.update(override)
    return files


def at_upload(p: Platform, sub_id: int) -> Submission:
    """The submission as the upload left it, before any worker ran."""
    with p.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None
        return sub


def assert_failed_at_upload(p: Platform, sub_id: int) -> Submission:
    """Screened at upload: failed at once, never claimed by a worker."""
    sub = at_upload(p, sub_id)
    assert (sub.status, sub.attempts) == (SubmissionStatus.failed, 0), sub.message
    assert sub.finished_at is not None
    return sub


def assert_slot_still_free(p: Platform) -> None:
    """The failure used no daily submission: a good upload is accepted and scored now."""
    ok = evaluate(p, submit(p, good_zip()))
    assert ok.status is SubmissionStatus.succeeded, ok.message


def streamed_nifti_gz(shape: tuple[int, ...], dtype: str, affine: np.ndarray = AFFINE) -> bytes:
    """A gzipped NIfTI of zeros, written without ever holding its voxels in memory."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.dtype(dtype))
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4  # 348-byte header, 4-byte extension flag
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    out = [packer.compress(raw)]
    left = int(np.prod(shape)) * np.dtype(dtype).itemsize
    zeros = bytes(1 << 22)
    while left > 0:
        out.append(packer.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    out.append(packer.flush())
    return b"".join(out)


# -- item 2: masks are checked from their header before any voxel is read ----------------------


def header_bomb() -> bytes:
    """1 KB of gzipped NIfTI whose header claims 1400 x 1400 x 1400 voxels (2.7 GB of uint8)."""
    header = nib.Nifti1Header()
    header.set_data_shape((1400, 1400, 1400))
    header.set_data_dtype(np.uint8)
    header.set_sform(AFFINE, code=1)
    header["vox_offset"] = 352
    return gzip.compress(header.binaryblock + b"\0" * 4 + bytes(64))


def test_header_bomb_is_refused_from_its_header_without_reading_voxels(
    platform: Platform,
) -> None:
    import covseg.metrics.batch  # noqa: F401  (imports are not what is measured)

    bomb = header_bomb()
    assert len(bomb) < 1024
    data = make_zip(case_files(**{"case-A-002.nii.gz": bomb}))
    tracemalloc.start()
    try:
        sub_id = submit(platform, data)
        sub = assert_failed_at_upload(platform, sub_id)
        evaluate(platform, sub_id)  # a worker that gets the message anyway does nothing
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated: voxels were read"
    assert sub.message == (
        "1 case(s) failed the checks, e.g. case-A-002: 1400 voxels along axis 0 (R), "
        "the truth has 16 (shape (1400, 1400, 1400) vs (16, 16, 4))"
    )
    assert_slot_still_free(platform)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (
            nifti_bytes(truth_mask(0), np.diag([0.8, 0.8, 2.5, 1.0]) + np.eye(4, k=3) * 5),
            "grid shifted by 5 mm from the truth's (origin (5, 0, 0) vs (0, 0, 0) mm",
        ),
        (
            nifti_bytes(truth_mask(0).astype(np.complex64)),
            "voxel type complex64 is not a mask type",
        ),
    ],
    ids=["affine", "data type"],
)
def test_affine_and_data_type_come_from_the_header(
    platform: Platform, mask: bytes, expected: str
) -> None:
    sub_id = submit(platform, make_zip(case_files(**{"case-A-001.nii.gz": mask})))
    sub = assert_failed_at_upload(platform, sub_id)
    assert sub.message.startswith("1 case(s) failed the checks, e.g. case-A-001: "), sub.message
    assert expected in sub.message


def test_a_mask_with_flipped_axes_passes_the_header_check(platform: Platform) -> None:
    """The scorer reorients a mask stored LAS against an RAS truth: the header check agrees."""
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = SHAPE_J - 1
    mask = nifti_bytes(truth_mask(0)[:, ::-1, :].copy(), AFFINE @ flip)
    sub_id = submit(platform, make_zip(case_files(**{"case-A-001.nii.gz": mask})))
    assert at_upload(platform, sub_id).status is SubmissionStatus.queued
    sub = evaluate(platform, sub_id)
    assert sub.status is SubmissionStatus.succeeded, sub.message
    assert {r.case_id: r.metrics["dice"] for r in sub.results}["case-A-001"] == 1.0


def big_platform(root: Path, shape: tuple[int, int, int]) -> Platform:
    """The tiny challenge with one validation case of ``shape`` voxels (zeros)."""
    folder = root / "source" / "big"
    folder.mkdir(parents=True)
    (folder / "big-001_seg.nii.gz").write_bytes(streamed_nifti_gz(shape, "uint8"))
    return build_platform(root, truth="big", sources={"big-001": "seen"})


def test_a_mask_over_the_memory_limit_fails_its_submission_and_nothing_else(
    tmp_path: Path,
) -> None:
    shape = (512, 512, 120)  # as float64, 250 MB for the prediction alone
    p = big_platform(tmp_path, shape)
    p.settings.eval_memory_mb = 450
    heavy = streamed_nifti_gz(shape, "float64")
    sub = evaluate(p, submit(p, make_zip({"big-001.nii.gz": heavy})))
    assert sub.status is SubmissionStatus.failed and sub.attempts == 1
    assert "memory" in sub.message and "450 MB" in sub.message, sub.message
    # The worker (this process) is unharmed, and the failure did not use the daily slot.
    p.settings.eval_memory_mb = None
    light = streamed_nifti_gz(shape, "uint8")
    ok = evaluate(p, submit(p, make_zip({"big-001.nii.gz": light})))
    assert ok.status is SubmissionStatus.succeeded, ok.message


def scoring_children() -> list[psutil.Process]:
    """Scoring processes this test process started (and did not reap)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "covseg.platform.sandbox" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_scoring_over_the_time_limit_is_stopped(platform: Platform) -> None:
    others = {p.pid for p in scoring_children()}  # other threads' children, if any are alive
    platform.settings.eval_timeout_s = 0.0
    sub = evaluate(platform, submit(platform, good_zip()))
    assert sub.status is SubmissionStatus.failed and sub.attempts == 1
    assert sub.message.startswith("the evaluation took longer than the limit of 0 s")
    assert [p for p in scoring_children() if p.pid not in others] == []
    platform.settings.eval_timeout_s = 600
    assert_slot_still_free(platform)


# -- item 3: corrupt uploads fail at once, clearly, and do not count ----------------------------


def corrupt(zip_bytes: bytes, member: str, at: int, value: int | None = None) -> bytes:
    """``zip_bytes`` with byte ``at`` of ``member``'s compressed data set to ``value``.

    ``None`` flips every bit of the byte.
    """
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        info = zf.getinfo(member)
    data = bytearray(zip_bytes)
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + at] = data[start + at] ^ 0xFF if value is None else value
    return bytes(data)


def stored_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


DAMAGED = {
    # BFINAL=1, BTYPE=11: "invalid block type", a zlib.error that used to escape.
    "corrupt deflate": corrupt(make_zip(case_files()), "case-A-002.nii.gz", 0, 0xFF),
    # A stored member whose bytes no longer match its CRC-32.
    "bad checksum": corrupt(stored_zip(case_files()), "case-A-002.nii.gz", 40, 0x55),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_member_fails_at_once_and_does_not_count(platform: Platform, name: str) -> None:
    sub = assert_failed_at_upload(platform, submit(platform, DAMAGED[name]))
    assert sub.message == "the archive is damaged: case-A-002.nii.gz"
    assert_slot_still_free(platform)


def nifti_with_extension(size: int) -> bytes:
    """An uncompressed NIfTI mask carrying ``size`` bytes of (compressible) extension data."""
    img = nib.Nifti1Image(truth_mask(1), AFFINE)
    payload = np.random.default_rng(1).integers(0, 4, size, dtype=np.uint8).tobytes()
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, payload))
    return img.to_bytes()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["crc", "zlib"])
def test_damage_deep_inside_a_member_fails_in_one_step_in_the_worker(
    platform: Platform, method: int
) -> None:
    """Damage past the first 4 KB passes the screening; unpacking finds it and fails at once."""
    files = case_files()
    del files["case-A-002.nii.gz"]
    files["case-A-002.nii"] = nifti_with_extension(200_000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    info = zipfile.ZipFile(buffer).getinfo("case-A-002.nii")
    damaged = corrupt(buffer.getvalue(), "case-A-002.nii", info.compress_size // 2)
    sub_id = submit(platform, damaged)
    assert at_upload(platform, sub_id).status is SubmissionStatus.queued
    sub = evaluate(platform, sub_id)
    assert (sub.status, sub.attempts) == (SubmissionStatus.failed, 1)
    assert sub.message == "the archive is damaged: case-A-002.nii"
    assert not list((platform.settings.data_dir / "work").glob("*"))
    assert_slot_still_free(platform)


def test_a_damaged_table_of_contents_fails_clearly(platform: Platform) -> None:
    data = make_zip(case_files())
    sub = evaluate(platform, submit(platform, data[:-10]))  # truncated end record
    assert sub.status is SubmissionStatus.failed
    assert "damaged" in sub.message or "not a zip" in sub.message


def deflated_zeros(name: str, size: int) -> bytes:
    """A zip with one deflated member of ``size`` zero bytes, built a chunk at a time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as out:
            chunk = bytes(1 << 22)
            for start in range(0, size, len(chunk)):
                out.write(chunk[: min(len(chunk), size - start)])
    return buffer.getvalue()


def test_zip_bomb_is_refused_from_the_central_directory_before_extracting(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = deflated_zeros("case-A-001.nii.gz", 40_000_000)  # 40 MB in ~40 KB
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(str(name))
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    sub = evaluate(platform, submit(platform, bomb))
    assert sub.status is SubmissionStatus.failed and opened == []
    assert sub.message.startswith("case-A-001.nii.gz: declares 40.0 MB unpacked, more than a mask")


def test_ratio_and_total_limits_are_read_before_extracting(tmp_path: Path) -> None:
    reference = Reference((256, 256, 64), AFFINE, np.dtype(np.uint8))
    zip_path = tmp_path / "u.zip"
    zip_path.write_bytes(deflated_zeros("c.nii", 5_000_000))
    with pytest.raises(Invalid, match=r"c.nii: expands \d+ times; at most 100 allowed"):
        unpack(zip_path, {"c": reference}, tmp_path / "w", 10**9, 10, max_ratio=100)
    with pytest.raises(Invalid, match="unpacks to 5.0 MB, more than 1.0 MB"):
        unpack(zip_path, {"c": reference}, tmp_path / "w", 10**6, 10)
    assert not list((tmp_path / "w").glob("*"))


def test_unpacking_reports_a_heartbeat_every_megabyte(tmp_path: Path) -> None:
    reference = Reference((256, 256, 64), AFFINE, np.dtype(np.uint8))
    zip_path = tmp_path / "u.zip"
    zip_path.write_bytes(make_zip({"c.nii": np.random.default_rng(0).bytes(3_500_000)}))
    beats: list[int] = []
    found = unpack(
        zip_path, {"c": reference}, tmp_path / "w", 10**9, 10, alive=lambda: beats.append(1)
    )
    assert found["c"][1] == "c.nii" and found["c"][0].stat().st_size == 3_500_000
    assert len(beats) == 4


def test_recovery_removes_the_work_folder_of_a_killed_worker(platform: Platform) -> None:
    dead = submit(platform, good_zip())
    live = submit(platform, good_zip(), "bob@example.org")
    dead_token = evaluation.claim(platform.factory, dead)
    live_token = evaluation.claim(platform.factory, live)
    assert dead_token is not None and live_token is not None
    dead_work = platform.settings.work_dir(dead, dead_token)
    live_work = platform.settings.work_dir(live, live_token)
    for folder in (dead_work, live_work):
        folder.mkdir(parents=True)
        (folder / "case-A-001.nii.gz").write_bytes(b"x")
    with platform.db() as db, db.begin():
        db.execute(
            update(Submission)
            .where(Submission.id == dead)
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
    queue = make_queue(platform.settings, platform.factory)
    assert queue.recover() == [dead]
    assert not dead_work.exists() and live_work.is_dir()


def test_limits_are_options_of_covseg_worker(platform: Platform) -> None:
    sub_id = submit(platform, good_zip())
    args = ["worker", "--data-dir", str(platform.settings.data_dir), "--burst"]
    args += ["--max-zip-files", "2", "--eval-timeout", "60", "--eval-memory-mb", "2000"]
    args += ["--max-unzipped-mb", "1", "--max-zip-ratio", "50"]
    queue = make_queue(platform.settings, platform.factory)
    queue.enqueue(sub_id)
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with platform.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None
        assert sub.status is SubmissionStatus.failed
        assert sub.message == "the zip holds 3 files; at most 2 allowed"


# -- item 9: no server paths in participants' messages -------------------------------------------


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (nifti_bytes(truth_mask(0) * 2), "label values other than 0/1 (2)"),
        (b"garbage", "cannot read the mask's NIfTI header"),
        (nib.Nifti1Image(truth_mask(0), AFFINE).to_bytes()[:-30], "case-A-001.nii: cannot"),
    ],
    ids=["non-binary", "not a NIfTI", "truncated"],
)
def test_case_errors_name_the_case_not_a_server_path(
    platform: Platform, member: bytes, problem: str
) -> None:
    name = "case-A-001.nii" if member.startswith(b"\x5c\x01") else "case-A-001.nii.gz"
    files = {k: v for k, v in case_files().items() if not k.startswith("case-A-001")}
    sub = evaluate(platform, submit(platform, make_zip({**files, name: member})))
    assert sub.status is SubmissionStatus.failed
    shown = [sub.message, *(r.error for r in sub.results)]
    root = str(platform.settings.data_dir.parent)
    assert all(root not in text and "/work/" not in text for text in shown), shown
    assert problem in sub.message and "case-A-001" in sub.message, sub.message


# -- item 10: the worker ends with the server ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], psutil.Process]]:
    """``covseg serve`` with its worker, on a free localhost port; yields both processes."""
    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 1 and "worker" in workers[0].cmdline()
        yield proc, workers[0]
    finally:
        for child in psutil.Process(proc.pid).children() if proc.poll() is None else []:
            child.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_server_stops_its_worker(
    server: tuple[subprocess.Popen[bytes], psutil.Process], signum: int
) -> None:
    proc, worker = server
    proc.send_signal(signum)
    proc.wait(timeout=60)
    try:
        worker.wait(timeout=10)
    except psutil.TimeoutExpired:
        worker.kill()
        pytest.fail("the worker outlived its server")
    assert not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE


def test_a_worker_whose_server_was_killed_stops_by_itself(
    server: tuple[subprocess.Popen[bytes], psutil.Process],
) -> None:
    proc, worker = server
    proc.kill()
    proc.wait()
    try:
        worker.wait(timeout=20)
    except psutil.TimeoutExpired:
        worker.kill()
        pytest.fail("the worker outlived its killed server")


def test_a_stopping_worker_hands_its_evaluation_back(platform: Platform) -> None:
    sub_id = submit(platform, good_zip())
    queue = make_queue(platform.settings, platform.factory)
    queue.enqueue(sub_id)

    def stop_after_first(done: int) -> None:
        queue.stopping.set()  # SIGTERM arrives while the cases are scored

    real = evaluation.evaluate_submission

    def evaluate_with_hook(*args: object, **kwargs: object) -> bool:
        return real(*args, on_case=stop_after_first, **kwargs)  # type: ignore[arg-type]

    import covseg.platform.tasks as tasks

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks, "evaluate_submission", evaluate_with_hook)
        queue.drain()  # runs the task, which hands back and re-enqueues
    with platform.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None
        assert (sub.status, sub.attempts, sub.claim_token) == (SubmissionStatus.queued, 0, None)
    assert not list((platform.settings.data_dir / "work").glob("*"))
    queue.stopping.clear()
    assert queue.drain() >= 1  # the next worker finds it in the queue
    with platform.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None and sub.status is SubmissionStatus.succeeded
        assert sub.times_scored == 1


def test_one_scoring_process_serves_consecutive_submissions(platform: Platform) -> None:
    """Starting Python + scipy costs more than a small submission: the child is reused."""
    others = {p.pid for p in scoring_children()} - {thread_sandbox().pid}
    evaluate(platform, submit(platform, good_zip()))
    first = [p.pid for p in scoring_children() if p.pid not in others]
    assert len(first) == 1
    evaluate(platform, submit(platform, good_zip(), "bob@example.org"))
    assert [p.pid for p in scoring_children() if p.pid not in others] == first


def test_a_thread_that_ends_takes_its_scoring_process_with_it() -> None:
    """Worker threads come and go: an ended thread's scoring child must not live on."""
    started: list[int | None] = []

    def work() -> None:
        sandbox = thread_sandbox()
        sandbox._start()  # what the first job does
        started.append(sandbox.pid)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    gc.collect()
    assert started and started[0] is not None
    deadline = time.monotonic() + 10
    while psutil.pid_exists(started[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(started[0])


def test_the_server_judges_headers_without_importing_the_scorer() -> None:
    """Screening runs in the web server: it must not pull in scipy and pandas."""
    code = "import sys, numpy as np, covseg.platform.app, covseg.platform.services.uploads as u; "
    code += "r = u.Reference((2, 2, 2), np.eye(4), np.dtype('u1')); "
    code += "assert u._judge((2, 2, 2), np.eye(4), np.dtype('u1'), r) is None; "
    code += "print(sorted({'scipy', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_each_case_sets_its_own_memory_limit_in_a_reused_process() -> None:
    """Pool processes outlive a job: every case sets its job's limit, lower or higher."""
    code = (
        "import resource; from covseg.platform.sandbox import _limit_memory as m; "
        "m(600_000_000); a = resource.getrlimit(resource.RLIMIT_AS)[0]; "
        "m(900_000_000); b = resource.getrlimit(resource.RLIMIT_AS)[0]; "
        "m(None); print(a, b, resource.getrlimit(resource.RLIMIT_AS)[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["600000000", "900000000", str(resource_unlimited())]


def resource_unlimited() -> int:
    import resource

    return int(resource.getrlimit(resource.RLIMIT_AS)[1])
