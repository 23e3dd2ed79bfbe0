"""Load and faults of the challenge platform on localhost (issue 6).

1. Load: N participants (default 50, each its own team) upload a 46-case submission at once
   to ``covseg serve`` while a visitor keeps loading pages; reports uploads per second, p50/p95
   page latency during the uploads, the time until every submission is scored, and checks that
   every accepted submission was scored exactly once.
2. Faults: the same participants submit to a second phase; the worker is killed (SIGKILL) in
   the middle of the evaluations and restarted; every submission must still end scored, none
   twice.
3. Hostile mix (issue 22): while the N valid uploads are scored, 10 more teams send hostile
   ones (a NIfTI header claiming 1400^3 voxels, a zip bomb, corrupt deflate data, escaping
   path names); each must fail, and the team's next (valid) upload must be accepted, i.e. the
   failure used no daily slot. Reports each hostile one's time from claim to failure and from
   upload to failure (the latter includes waiting behind the valid ones in the queue), the
   worker's peak memory (its process tree, sampled every 0.1 s), and page p95 meanwhile.

    .venv/bin/python benchmarks/bench_platform.py [--participants 50] [--cases 46] [--size 48]
        [--parts load,faults,hostile,screen]

4. Screen: what screening one upload costs the web server at COVID-19-20 size (46 cases of
   512 x 512 x 100 voxels): reading the truth headers, then the zip's table of contents and
   each member's header (in-process, three repeats).

The masks are synthetic (``--size`` x ``--size`` x 12 voxels), so scoring is cheap and the
figures measure the platform (HTTP, database, queue), not the metrics.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
from sqlalchemy import func, select

from covseg.platform import security
from covseg.platform.config import Settings
from covseg.platform.db import make_engine, session_factory, upgrade
from covseg.platform.models import CaseResult, Submission, SubmissionStatus, utcnow
from covseg.platform.services import accounts, challenges, participants

PASSWORD = "benchmark-password"
HOSTILE = 10
SLUG = "bench"
CLI = [sys.executable, "-c", "from covseg.cli import main; main()"]


def _mask(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size, 12), dtype=np.uint8)
    for _ in range(3):
        x, y = rng.integers(4, size - 12, 2)
        mask[x : x + 8, y : y + 6, 3:9] = 1
    return mask


def _nifti(array: np.ndarray) -> bytes:
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes(), compresslevel=1)


def make_challenge(root: Path, settings: Settings, n_users: int, n_cases: int, size: int) -> bytes:
    """Truth, accounts, teams and the challenge; returns the zip every participant uploads."""
    rng = np.random.default_rng(0)
    truth = root / "truth"
    truth.mkdir(parents=True)
    files, sources = {}, {}
    for i in range(n_cases):
        case = f"case-{i:03d}"
        mask = _mask(rng, size)
        (truth / f"{case}_seg.nii.gz").write_bytes(_nifti(mask))
        files[f"{case}.nii.gz"] = _nifti(np.roll(mask, 1, axis=0))
        sources[case] = "seen" if i < n_cases // 2 else "unseen"
    now = utcnow()
    phase = {
        "kind": "validation",
        "opens": now - timedelta(days=1),
        "closes": now + timedelta(days=1),
        "truth": "truth",
        "sources": sources,
    }
    spec = {
        "slug": SLUG,
        "auto_approve": True,
        "phases": [{"slug": p, **phase} for p in ("load", "faults", "hostile")],
    }
    security.set_hash_cost(time_cost=1, memory_kib=64)  # 50 log-ins, not a password benchmark
    factory = session_factory(make_engine(settings.url))
    with factory() as db, db.begin():
        challenge = challenges.create_challenge(db, settings, spec, root)
        for i in range(n_users):
            user = accounts.register_user(db, f"p{i}@bench.org", PASSWORD)
            participants.request_registration(db, user, challenge, accept_licence=True)
            participants.create_team(db, user, challenge, f"team-{i:02d}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def start_worker(settings: Settings, stale_after: float) -> subprocess.Popen[bytes]:
    """A ``covseg worker`` process (two threads)."""
    args = ["worker", "--data-dir", str(settings.data_dir), "--threads", "2"]
    args += ["--stale-after", str(stale_after)]
    return subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def counts(settings: Settings, phase: str) -> dict[str, int]:
    """Submissions per status, total times scored and stored case results of a phase."""
    factory = session_factory(make_engine(settings.url))
    with factory() as db:
        ch = challenges.get_challenge(db, SLUG)
        ph = challenges.get_phase(db, ch, phase)
        subs = list(db.scalars(select(Submission).where(Submission.phase_id == ph.id)))
        results = db.scalar(
            select(func.count(CaseResult.id)).join(Submission).where(Submission.phase_id == ph.id)
        )
        out = {s.value: 0 for s in SubmissionStatus}
        for sub in subs:
            out[sub.status.value] += 1
        out["times_scored"] = sum(s.times_scored for s in subs)
        out["scored_twice"] = sum(s.times_scored > 1 for s in subs)
        out["case_results"] = int(results or 0)
        return out


def wait_scored(settings: Settings, phase: str, expected: int, limit: float) -> float:
    """Seconds until every submission of ``phase`` is finished."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        c = counts(settings, phase)
        if c["succeeded"] + c["failed"] >= expected:
            return time.perf_counter() - start
        time.sleep(0.5)
    raise TimeoutError(f"not all scored after {limit} s: {counts(settings, phase)}")


def hostile_zips(valid: bytes) -> list[tuple[str, bytes]]:
    """Ten hostile uploads, each a copy of ``valid`` with one member made hostile."""
    with zipfile.ZipFile(io.BytesIO(valid)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    first = sorted(files)[0]
    header = nib.Nifti1Header()
    header.set_data_shape((1400, 1400, 1400))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    header_bomb = gzip.compress(header.binaryblock + bytes(4) + bytes(64))

    def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return buffer.getvalue()

    bomb = io.BytesIO()  # 2 GB of zeros in ~2 MB, written a chunk at a time
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(first, "w", force_zip64=True) as out:
            for _ in range(512):
                out.write(bytes(1 << 22))
    deflated = zipped(files)
    with zipfile.ZipFile(io.BytesIO(deflated)) as zf:
        offset = zf.getinfo(first).header_offset
    corrupt = bytearray(deflated)
    name_len, extra_len = struct.unpack("<HH", corrupt[offset + 26 : offset + 30])
    corrupt[offset + 30 + name_len + extra_len] = 0xFF  # invalid deflate block type
    others = {k: v for k, v in files.items() if k != first}
    return [
        ("header bomb", zipped({**others, first: header_bomb})),
        ("header bomb", zipped({**others, "sub/" + first: header_bomb})),
        ("header bomb", zipped({**others, first: header_bomb}, zipfile.ZIP_STORED)),
        ("zip bomb", bomb.getvalue()),
        ("zip bomb", bomb.getvalue()),
        ("zip bomb", bomb.getvalue()),
        ("corrupt deflate", bytes(corrupt)),
        ("corrupt deflate", bytes(corrupt)),
        ("path names", zipped({**others, "../../evil/" + first: files[first]})),
        ("path names", zipped({**others, "/etc/" + first: files[first]})),
    ]


def screening_cost(root: Path) -> None:
    """Part 4: milliseconds to screen one 46-case upload of COVID-19-20-size masks."""
    from covseg.platform.services.uploads import read_reference, screen

    folder = root / "screen"
    folder.mkdir()
    mask = np.zeros((512, 512, 100), np.uint8)
    mask[200:260, 200:280, 40:60] = 1
    blob = _nifti(mask)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(46):
            (folder / f"c{i:02d}_seg.nii.gz").write_bytes(blob)
            zf.writestr(f"c{i:02d}.nii.gz", blob)
    (folder / "u.zip").write_bytes(buffer.getvalue())
    screen(folder / "u.zip", {"c00": read_reference(folder / "c00_seg.nii.gz")}, 10**10, 500)
    for _ in range(3):
        t = time.perf_counter()
        refs = {f"c{i:02d}": read_reference(folder / f"c{i:02d}_seg.nii.gz") for i in range(46)}
        t1 = time.perf_counter()
        assert screen(folder / "u.zip", refs, 8 * 10**9, 500, 1100) is None
        t2 = time.perf_counter()
        print(
            f"screening: 46 truth headers {1000 * (t1 - t):.0f} ms, the 46-member zip "
            f"({len(buffer.getvalue()) / 1e6:.1f} MB) {1000 * (t2 - t1):.0f} ms"
        )


class Visitor:
    """Loads the home, challenge and leaderboard pages one after another until stopped."""

    def __init__(self, url: str, phase: str) -> None:
        self.url, self.phase = url, phase
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pages = ["/", f"/challenges/{SLUG}", f"/challenges/{SLUG}/phases/{self.phase}/leaderboard"]
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                t = time.perf_counter()
                client.get(pages[i % len(pages)]).raise_for_status()
                self.latencies.append(time.perf_counter() - t)
                i += 1

    def stop(self) -> str:
        """Stop and describe the latencies (count, p50, p95)."""
        self._stop.set()
        self._thread.join()
        lat = self.latencies
        q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
        return f"{len(lat)}, p50 {1000 * statistics.median(lat):.0f} ms, p95 {1000 * q[18]:.0f} ms"


class PeakMemory:
    """Peak resident memory of a process and its children, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_main, self.peak_tree = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        main = psutil.Process(self.pid)
        while not self._stop.wait(0.1):
            try:
                procs = [main, *main.children(recursive=True)]
                rss = []
                for proc in procs:
                    try:
                        rss.append(proc.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
                self.peak_main = max(self.peak_main, rss[0])
                self.peak_tree = max(self.peak_tree, sum(rss))
            except psutil.NoSuchProcess:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def hostile_mix(
    url: str, settings: Settings, valid: list[str], hostile: list[str], data: bytes
) -> None:
    """Part 3: hostile uploads while the valid ones are scored."""

    payloads = hostile_zips(data)
    sent: list[tuple[str, int, float, str]] = []  # kind, id, POST seconds, status in the reply

    def send_hostile() -> None:
        time.sleep(1.0)  # in the middle of the valid uploads
        with httpx.Client(base_url=url, timeout=120) as client:
            for token, (kind, payload) in zip(hostile, payloads, strict=True):
                t = time.perf_counter()
                r = client.post(
                    f"/api/challenges/{SLUG}/phases/hostile/submissions",
                    headers={"authorization": f"Bearer {token}"},
                    files={"file": ("masks.zip", payload, "application/zip")},
                )
                assert r.status_code == 202, r.text
                reply = r.json()
                sent.append((kind, reply["id"], time.perf_counter() - t, reply["status"]))

    visitor = Visitor(url, "hostile")  # from the first upload until the last one is scored
    t0 = time.perf_counter()
    sender = threading.Thread(target=send_hostile)
    sender.start()
    seconds, statuses, lat = upload_all(url, valid, data, "hostile")
    sender.join()
    accepted = statuses.count(202)
    print(f"hostile mix: {accepted}/{len(valid)} valid uploads accepted in {seconds:.1f} s")
    q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
    p50, p95 = 1000 * statistics.median(lat), 1000 * q[18]
    print(f"page loads during the uploads: {len(lat)}, p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    wait_scored(settings, "hostile", accepted + len(sent), 3600)
    print(f"all scored {time.perf_counter() - t0:.1f} s after the first upload")
    print(f"page loads from the first upload until all were scored: {visitor.stop()}")
    ids = [sub_id for _, sub_id, _, _ in sent]
    factory = session_factory(make_engine(settings.url))
    deadline = time.perf_counter() + 3600
    while time.perf_counter() < deadline:
        with factory() as db:
            subs = {s.id: s for s in db.scalars(select(Submission).where(Submission.id.in_(ids)))}
        if all(s.finished_at for s in subs.values()):
            break
        time.sleep(0.5)
    worst = 0.0
    for kind, sub_id, post_s, replied in sent:
        sub = subs[sub_id]
        assert sub.finished_at is not None
        failed_s = (sub.finished_at - sub.created_at).total_seconds()
        worst = max(worst, failed_s, post_s)
        print(
            f"  {kind:<16} reply '{replied}' in {post_s:.2f} s; {sub.status.value} "
            f"{failed_s:.2f} s after it was stored, attempts {sub.attempts}: {sub.message[:80]}"
        )
        assert sub.status is SubmissionStatus.failed and sub.times_scored == 0
    print(f"hostile: every one failed, the slowest {worst:.2f} s after its upload")
    # The failures used no daily slot: each hostile team's next valid upload is accepted.
    seconds, statuses, _ = upload_all(url, hostile, data, "hostile")
    print(f"hostile teams' next valid uploads: {statuses.count(202)}/{len(hostile)} accepted")
    assert statuses.count(202) == len(hostile), statuses
    wait_scored(settings, "hostile", accepted + 2 * len(hostile), 3600)
    c = counts(settings, "hostile")
    print(f"hostile phase: {c}")
    assert c["succeeded"] == accepted + len(hostile) and c["failed"] == len(hostile)
    assert c["scored_twice"] == 0 and c["times_scored"] == accepted + len(hostile)
    print("every valid upload scored exactly once; every hostile one failed without counting")


def upload_all(
    url: str, tokens: list[str], data: bytes, phase: str
) -> tuple[float, list[int], list[float]]:
    """Everyone uploads at once while a visitor loads pages; (seconds, statuses, latencies)."""
    latencies: list[float] = []
    done = threading.Event()

    def visitor() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            pages = ["/", f"/challenges/{SLUG}", f"/challenges/{SLUG}/phases/{phase}/leaderboard"]
            i = 0
            while not done.is_set():
                t = time.perf_counter()
                client.get(pages[i % len(pages)]).raise_for_status()
                latencies.append(time.perf_counter() - t)
                i += 1

    def upload(token: str) -> int:
        with httpx.Client(base_url=url, timeout=300) as client:
            r = client.post(
                f"/api/challenges/{SLUG}/phases/{phase}/submissions",
                headers={"authorization": f"Bearer {token}"},
                files={"file": ("masks.zip", data, "application/zip")},
            )
            return r.status_code

    watcher = threading.Thread(target=visitor)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        statuses = list(pool.map(upload, tokens))
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    return seconds, statuses, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--cases", type=int, default=46)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--parts", default="load,faults,hostile", help="Parts to run, in order.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "screen" in parts:  # in-process, no server needed
        screening_cost(Path(tempfile.mkdtemp(prefix="covseg-bench-screen-")))
        parts.discard("screen")
        if not parts:
            return
    root = Path(tempfile.mkdtemp(prefix="covseg-bench-platform-"))
    settings = Settings(data_dir=root / "data")
    settings.data_dir.mkdir(parents=True)
    upgrade(make_engine(settings.url))
    n_users = args.participants + HOSTILE
    data = make_challenge(root, settings, n_users, args.cases, args.size)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    serve_args = ["serve", "--no-worker", "--port", str(port), "--data-dir", str(settings.data_dir)]
    server = subprocess.Popen(
        CLI + serve_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    worker = start_worker(settings, stale_after=3)
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as client:
            tokens = [
                client.post(
                    "/api/auth/login", json={"email": f"p{i}@bench.org", "password": PASSWORD}
                ).json()["token"]
                for i in range(n_users)
            ]
        tokens, hostile = tokens[: args.participants], tokens[args.participants :]
        print(f"{args.participants} participants, {args.cases} cases of {args.size}^2 x 12 voxels")
        print(f"zip of one submission: {len(data) / 1e6:.2f} MB; machine: {os.cpu_count()} cores")

        if "load" in parts:
            # 1. Load.
            t0 = time.perf_counter()
            seconds, statuses, lat = upload_all(url, tokens, data, "load")
            accepted = statuses.count(202)
            scored_after = wait_scored(settings, "load", accepted, 3600) + seconds
            c = counts(settings, "load")
            print(
                f"uploads: {accepted}/{len(statuses)} accepted in {seconds:.1f} s "
                f"= {accepted / seconds:.1f} uploads/s"
            )
            q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
            print(
                f"page loads during the uploads: {len(lat)}, "
                f"p50 {1000 * statistics.median(lat):.0f} ms, p95 {1000 * q[18]:.0f} ms"
            )
            print(
                f"all scored {scored_after:.1f} s after the first upload "
                f"({time.perf_counter() - t0:.1f} s wall); {c}"
            )
            assert c["succeeded"] == accepted and c["scored_twice"] == 0
            assert c["times_scored"] == accepted and c["case_results"] == accepted * args.cases

        if "faults" in parts:
            # 2. Faults: kill the worker mid-evaluation, restart it.
            seconds, statuses, _ = upload_all(url, tokens, data, "faults")
            accepted = statuses.count(202)
            while counts(settings, "faults")["succeeded"] < max(1, accepted // 5):
                time.sleep(0.2)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            at_kill = counts(settings, "faults")
            print(f"worker killed: {at_kill}")
            time.sleep(3.5)  # the dead worker's heartbeats become stale
            worker = start_worker(settings, stale_after=3)
            wait_scored(settings, "faults", accepted, 3600)
            c = counts(settings, "faults")
            print(f"after restart: {c}")
            assert c["succeeded"] == accepted and c["scored_twice"] == 0
            assert c["times_scored"] == accepted and c["case_results"] == accepted * args.cases
            print("every accepted submission scored exactly once, also across the worker crash")

        # 3. Hostile uploads while valid ones are scored.
        if "hostile" in parts:
            peak = PeakMemory(worker.pid)
            hostile_mix(url, settings, tokens, hostile, data)
            peak.stop()
            print(
                f"worker peak memory (RSS): {peak.peak_main / 1e6:.0f} MB its own process, "
                f"{peak.peak_tree / 1e6:.0f} MB with its scoring processes"
            )
    finally:
        worker.terminate()
        server.terminate()
        worker.wait(timeout=30)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
