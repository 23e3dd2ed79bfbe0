"""Log-in under attack: timing of unknown emails, memory of concurrent guesses, guessing speed.

Starts ``covseg serve --no-worker`` (default argon2 cost: 64 MiB, t=3) on 127.0.0.1 in a child
process, samples its resident memory every 10 ms, and sends from threads here:

1. alternating wrong log-ins for an unknown email and for a known one (wrong password),
   reporting the median time of each;
2. 32 concurrent wrong log-ins, once for 32 different emails and once for one account,
   reporting the server's peak memory above its idle level;
3. 90 wrong passwords, then the right one, for one account.

Run from the repository (``--serve-arg`` passes options to ``covseg serve``, e.g. a large
``--login-attempts`` to time step 1 without the back-off)::

    PYTHONPATH=$PWD python benchmarks/bench_login.py
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

PASSWORD = "correct horse battery"


def rss_mib(pid: int) -> float:
    """Resident memory of a process (MiB) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """``covseg serve`` in a child process, with a memory sampler."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-c", "from covseg.cli import main; main()", "serve"]
        command += ["--no-worker", "--port", str(self.port), "--data-dir", str(data_dir), *extra]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/challenges", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            self.close()
            raise SystemExit("the server did not start in 60 s")
        self.peak = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib(self.proc.pid))

    def idle_rss(self) -> float:
        """Current memory; resets the peak to it."""
        time.sleep(0.3)
        self.peak = rss_mib(self.proc.pid)
        return self.peak

    def close(self) -> None:
        """Stop sampling and the server."""
        if hasattr(self, "_stop"):
            self._stop.set()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def login(url: str, email: str, password: str) -> tuple[int, float]:
    start = time.perf_counter()
    r = httpx.post(
        f"{url}/api/auth/login", json={"email": email, "password": password}, timeout=120
    )
    return r.status_code, time.perf_counter() - start


def concurrent(url: str, emails: list[str]) -> list[int]:
    codes: list[int] = []
    barrier = threading.Barrier(len(emails))

    def one(email: str) -> None:
        barrier.wait()
        codes.append(login(url, email, "wrong-guess")[0])

    threads = [threading.Thread(target=one, args=(e,)) for e in emails]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed log-ins of each kind")
    parser.add_argument("--serve-arg", action="append", default=[], help="option for serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "a", args.serve_arg)
        try:
            url = server.url
            r = httpx.post(
                f"{url}/api/auth/register", json={"email": "u@bench.org", "password": PASSWORD}
            )
            assert r.status_code in (201, 202), r.text
            times: dict[str, list[float]] = {"unknown email": [], "wrong password": []}
            for i in range(args.rounds):
                times["unknown email"].append(login(url, f"ghost{i}@bench.org", "x" * 12)[1])
                times["wrong password"].append(login(url, "u@bench.org", "x" * 12)[1])
            for kind, values in times.items():
                print(f"{kind:>15}: median {1000 * statistics.median(values):6.1f} ms")
            idle = server.idle_rss()
            codes = concurrent(url, [f"g{i}@bench.org" for i in range(32)])
            print(
                f"32 concurrent wrong log-ins, 32 emails: peak +{server.peak - idle:.0f} MiB "
                f"(idle {idle:.0f} MiB); answers {sorted(set(codes))}"
            )
        finally:
            server.close()
        server = Server(Path(tmp) / "b", [])  # the default back-off
        try:
            url = server.url
            httpx.post(
                f"{url}/api/auth/register", json={"email": "u@bench.org", "password": PASSWORD}
            )
            idle = server.idle_rss()
            codes = concurrent(url, ["u@bench.org"] * 32)
            print(
                f"32 concurrent wrong log-ins, one account: peak +{server.peak - idle:.0f} MiB; "
                f"answers {[(c, codes.count(c)) for c in sorted(set(codes))]}"
            )
            httpx.post(
                f"{url}/api/auth/register", json={"email": "w@bench.org", "password": PASSWORD}
            )
            start = time.perf_counter()
            wrong = [login(url, "w@bench.org", f"guess-{i:03d}")[0] for i in range(90)]
            right = login(url, "w@bench.org", PASSWORD)[0]
            print(
                f"90 wrong passwords then the right one ({time.perf_counter() - start:.1f} s): "
                f"{[(c, wrong.count(c)) for c in sorted(set(wrong))]}, then {right}"
            )
        finally:
            server.close()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
