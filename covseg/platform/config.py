"""Settings of one platform instance: where its data and database live and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Settings:
    """Everything a server or worker needs to know, passed explicitly (no environment lookups).

    Parameters
    ----------
    data_dir
        Uploads, ground truth, downloads, rankings and the Huey queue. Never served statically:
        every file leaves through a route that checks who asks.
    database_url
        SQLAlchemy URL; ``None`` means a SQLite file ``platform.db`` in ``data_dir``.
    session_hours
        Log-in sessions expire after this many hours (web cookie and API token alike).
    max_upload_bytes, max_unzipped_bytes, max_zip_files, max_zip_ratio
        Limits that stop oversize uploads and zip bombs before any file is written out: the
        upload's size, the total unpacked size and number of files the zip declares, and the
        ratio of unpacked to packed size of any member over 1 MB. The default ratio, 1100, is
        above what deflate can reach (1032), so it refuses only bzip2/LZMA bombs; each member
        is also held to the most a mask of its case's shape can take.
    eval_memory_mb
        Address-space limit (MB) of the process that scores one submission; ``None``: 1 GiB
        plus 64 bytes per voxel of the phase's largest truth mask.
    eval_timeout_s
        Seconds the scoring of one submission may take before it fails.
    stale_after_s
        An evaluation whose worker has not reported for this long is considered dead and re-queued.
    workers
        Processes that score the cases of one submission (``covseg.parallel``); 1 scores inline.
    scheduler
        Address of a Dask scheduler to score on instead of local processes.
    login_free_failures, login_free_failures_per_client
        Failed log-ins an account (the email as typed) and a client address may make before
        each further attempt must wait (:mod:`~covseg.platform.services.throttle`).
    login_backoff_s, login_max_backoff_s
        The first wait after the free failures (s); it doubles with each failure up to the
        longest.
    hash_concurrency
        Password hashes computed at once (each takes argon2's 64 MiB); others queue.
    secure_cookies
        Mark cookies ``Secure`` and send HSTS: ``True`` always, ``False`` never, ``None`` when
        the request came over HTTPS (directly or through a trusted proxy's
        ``X-Forwarded-Proto``).
    source_dirs
        Folders whose files a challenge created on the server (page or API) may read: its
        ``base_dir``, truth and downloads must lie inside one. ``None``: ``data_dir/sources``.
    """

    data_dir: Path = field(default_factory=lambda: Path("covseg-data"))
    database_url: str | None = None
    session_hours: float = 12.0
    max_upload_bytes: int = 2_000_000_000
    max_unzipped_bytes: int = 8_000_000_000
    max_zip_files: int = 500
    max_zip_ratio: float = 1100.0
    eval_memory_mb: int | None = None
    eval_timeout_s: float = 1800.0
    stale_after_s: float = 300.0
    workers: int = 1
    scheduler: str | None = None
    login_free_failures: int = 5
    login_free_failures_per_client: int = 20
    login_backoff_s: float = 1.0
    login_max_backoff_s: float = 900.0
    hash_concurrency: int = 2
    secure_cookies: bool | None = None
    source_dirs: list[Path] | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def spec_roots(self) -> list[Path]:
        """The folders a challenge created on the server may read from (resolved)."""
        dirs = self.source_dirs if self.source_dirs is not None else [self.data_dir / "sources"]
        return [Path(d).resolve() for d in dirs]

    @property
    def managed_paths(self) -> list[Path]:
        """What the platform itself writes in ``data_dir``: never a challenge's source."""
        names = ("challenges", "uploads", "work", "platform.db", "queue.db")
        return [self.data_dir / name for name in names]

    @property
    def url(self) -> str:
        """The database URL actually used."""
        return self.database_url or f"sqlite:///{self.data_dir / 'platform.db'}"

    @property
    def huey_path(self) -> Path:
        """SQLite file of the evaluation queue."""
        return self.data_dir / "queue.db"

    def challenge_dir(self, slug: str) -> Path:
        """Folder of one challenge's files (truth, downloads, rankings)."""
        return self.data_dir / "challenges" / slug

    def work_dir(self, submission_id: int, claim_token: str) -> Path:
        """Scratch folder of one evaluation run (unpacked masks), removed when it ends."""
        return self.data_dir / "work" / f"{submission_id}-{claim_token[:8]}"

    def upload_path(self, submission_id: int) -> Path:
        """Where the zip of one submission is kept."""
        return self.data_dir / "uploads" / f"{submission_id}.zip"
