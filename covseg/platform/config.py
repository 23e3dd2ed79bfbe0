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
    max_upload_bytes, max_unzipped_bytes, max_zip_files
        Limits that stop oversize uploads and zip bombs before any file is written out.
    stale_after_s
        An evaluation whose worker has not reported for this long is considered dead and re-queued.
    workers
        Processes that score the cases of one submission (``covseg.parallel``); 1 scores inline.
    scheduler
        Address of a Dask scheduler to score on instead of local processes.
    """

    data_dir: Path = field(default_factory=lambda: Path("covseg-data"))
    database_url: str | None = None
    session_hours: float = 12.0
    max_upload_bytes: int = 2 * 1024**3
    max_unzipped_bytes: int = 8 * 1024**3
    max_zip_files: int = 500
    stale_after_s: float = 300.0
    workers: int = 1
    scheduler: str | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

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

    def upload_path(self, submission_id: int) -> Path:
        """Where the zip of one submission is kept."""
        return self.data_dir / "uploads" / f"{submission_id}.zip"
