"""Challenges and phases: creation from a spec, organizer rights, visibility, the audit log."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from covseg.metrics.registry import RANKING_METRICS
from covseg.platform.config import Settings
from covseg.platform.models import (
    AuditEvent,
    Case,
    Challenge,
    ChallengeOrganizer,
    Phase,
    PhaseKind,
    User,
    utcnow,
)
from covseg.platform.services.errors import Conflict, Forbidden, Invalid, NotFound

#: Metrics a board may show (the ranking tasks of :mod:`covseg.metrics.registry`).
METRICS = RANKING_METRICS
DEFAULT_METRICS = ["dice", "nsd", "nave", "hd95"]
#: The COVID-19-20 final ranking's metrics; with two subsets they make its six tasks.
DEFAULT_RANKING_TASKS = ("dice", "nsd", "nave")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MASK_SUFFIXES = ("_seg.nii.gz", ".nii.gz", "_seg.nii", ".nii")
#: COVID-19-20 names labels ``<case>_seg.nii.gz`` beside ``<case>_ct.nii.gz``.
_SEG_SUFFIXES = ("_seg.nii.gz", "_seg.nii")


def case_id_of(filename: str) -> str | None:
    """Case id of a mask file name (``X_seg.nii.gz``, ``X.nii.gz``, ``X.nii``), else ``None``."""
    for suffix in _MASK_SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return None


def get_challenge(db: Session, slug: str) -> Challenge:
    """The challenge with this slug."""
    challenge = db.scalar(select(Challenge).where(Challenge.slug == slug))
    if challenge is None:
        raise NotFound(f"no challenge {slug!r}")
    return challenge


def get_phase(db: Session, challenge: Challenge, slug: str) -> Phase:
    """The phase ``slug`` of a challenge."""
    phase = db.scalar(select(Phase).where(Phase.challenge_id == challenge.id, Phase.slug == slug))
    if phase is None:
        raise NotFound(f"no phase {slug!r} in {challenge.slug}")
    return phase


def is_organizer(db: Session, user: User | None, challenge: Challenge) -> bool:
    """Whether ``user`` runs this challenge (site admins run every challenge)."""
    if user is None:
        return False
    if user.is_admin:
        return True
    return db.get(ChallengeOrganizer, (challenge.id, user.id)) is not None


def require_organizer(db: Session, user: User | None, challenge: Challenge) -> User:
    """Refuse anyone who is not an organizer of ``challenge``."""
    if user is None or not is_organizer(db, user, challenge):
        raise Forbidden("only the challenge's organizers may do this")
    return user


def record(
    db: Session, actor: User | None, challenge: Challenge | None, action: str, detail: str = ""
) -> None:
    """Write one entry of the audit log (who, what, when)."""
    db.add(
        AuditEvent(
            challenge_id=challenge.id if challenge else None,
            user_id=actor.id if actor else None,
            action=action,
            detail=detail,
        )
    )


def audit_log(db: Session, actor: User, challenge: Challenge) -> list[AuditEvent]:
    """The challenge's audit log, newest first (organizers only)."""
    require_organizer(db, actor, challenge)
    rows = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.challenge_id == challenge.id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    )
    return list(rows)


def set_board_public(db: Session, actor: User, phase: Phase, public: bool) -> None:
    """Publish or hide a phase's leaderboard."""
    require_organizer(db, actor, phase.challenge)
    phase.board_public = public
    record(db, actor, phase.challenge, "publish board" if public else "hide board", phase.slug)


def _when(value: Any, field: str) -> datetime:
    """A spec's date or date-time as naive UTC (naive input is taken as UTC)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    elif not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise Invalid(f"{field}: not a date/time: {value!r}") from exc
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


class _Confinement:
    """Where a challenge spec may read files: inside ``roots``, outside the platform's own data.

    Every path is resolved (symlinks followed) before it is checked, and so is every file
    found inside a folder, so that a link cannot lead out (``/etc/passwd``, another
    challenge's truth in the data folder).
    """

    def __init__(self, settings: Settings, roots: Sequence[Path]) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.managed = [p.resolve() for p in settings.managed_paths]

    def _inside_managed(self, real: Path) -> bool:
        for managed in self.managed:
            if real.is_relative_to(managed):
                return True
            # platform.db-wal, queue.db-shm and the like
            if managed.suffix == ".db" and real.parent == managed.parent:
                if real.name.startswith(managed.name):
                    return True
        return False

    def check(self, path: Path, what: str) -> Path:
        """``path`` resolved, or :class:`Invalid` in one line naming ``what`` and why."""
        real = path.resolve()
        if self._inside_managed(real):
            raise Invalid(f"{what} {path}: inside the platform's own data folder; not readable")
        if not any(real.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(r) for r in self.roots)
            raise Invalid(f"{what} {path}: outside the folders a challenge may read ({allowed})")
        return real


def _sources(spec: Any, base: Path, jail: _Confinement) -> dict[str, str]:
    """Case -> source from a mapping or a CSV file with ``case,source`` columns."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    path = jail.check(base / str(spec), "sources file")
    with path.open(newline="") as handle:
        return {row["case"]: row["source"] for row in csv.DictReader(handle)}


def _copy_truth(
    phase_spec: dict[str, Any], base: Path, dest: Path, jail: _Confinement
) -> list[tuple[str, Path]]:
    """Copy a phase's ground-truth masks into the data folder; returns (case, copied path)."""
    slug = phase_spec.get("slug")
    if "truth" not in phase_spec:
        raise Invalid(f"phase {slug!r}: 'truth' (folder of masks) is required")
    folder = jail.check(base / str(phase_spec["truth"]), f"phase {slug!r}: truth folder")
    if not folder.is_dir():
        raise Invalid(f"phase {slug!r}: truth folder {folder} not found")
    dest.mkdir(parents=True, exist_ok=True)
    files = [p for p in sorted(folder.iterdir()) if case_id_of(p.name) is not None]
    if any(p.name.endswith(_SEG_SUFFIXES) for p in files):
        files = [p for p in files if p.name.endswith(_SEG_SUFFIXES)]  # skip the CTs beside
    cases: list[tuple[str, Path]] = []
    for path in files:
        real = jail.check(path, f"phase {slug!r}: truth file")
        case = str(case_id_of(path.name))
        target = dest / f"{case}{'.nii.gz' if path.name.endswith('.gz') else '.nii'}"
        shutil.copyfile(real, target)
        cases.append((case, target))
    if not cases:
        raise Invalid(f"phase {slug!r}: no NIfTI masks in {folder}")
    return cases


class _TruthGuard:
    """Recognises the bytes of any of the challenge's ground-truth files (by size, then SHA-256).

    So that a download (a file, or a folder zipped) never hands participants the truth, be it
    the truth folder itself, a folder above it, or a copy of the masks elsewhere.
    """

    def __init__(self, truth: dict[Path, str]) -> None:
        self._by_size: dict[int, list[tuple[Path, str]]] = {}
        for path, label in truth.items():
            self._by_size.setdefault(path.stat().st_size, []).append((path, label))
        self._digests: dict[Path, str] = {}

    def _digest(self, path: Path) -> str:
        if path not in self._digests:
            with path.open("rb") as handle:
                self._digests[path] = hashlib.file_digest(handle, "sha256").hexdigest()
        return self._digests[path]

    def check(self, path: Path, shown: str) -> None:
        """:class:`Invalid` if ``path`` holds the same bytes as a truth file."""
        for truth, label in self._by_size.get(path.stat().st_size, []):
            if self._digest(path) == self._digest(truth):
                raise Invalid(f"download {shown}: it is the ground truth of {label}")


def _copy_downloads(
    paths: list[Any], base: Path, dest: Path, jail: _Confinement, guard: _TruthGuard
) -> None:
    """Copy the files participants may download; folders become one zip each."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in paths:
        src = jail.check(base / str(item), "download")
        if src.is_dir():
            members = [
                (jail.check(path, "download"), path.relative_to(src.parent).as_posix())
                for path in sorted(src.rglob("*"))
                if path.is_file()
            ]
            for real, name in members:
                guard.check(real, f"{item}: {name}")
            with zipfile.ZipFile(dest / f"{src.name}.zip", "w", zipfile.ZIP_STORED) as zf:
                for real, name in members:
                    zf.write(real, name)
        elif src.is_file():
            guard.check(src, str(item))
            shutil.copyfile(src, dest / src.name)
        else:
            raise Invalid(f"download {src} not found")


def create_challenge(
    db: Session,
    settings: Settings,
    spec: dict[str, Any],
    base: Path,
    actor: User | None = None,
    roots: Sequence[Path] | None = None,
) -> Challenge:
    """Define a challenge from a spec (the parsed ``challenge.yaml``, see ``docs/platform.md``).

    Paths in the spec are relative to ``base``. Ground truth and downloads are copied into the
    data folder, so the challenge no longer depends on where they came from. ``base`` and
    every file the spec names must lie inside ``roots`` (default: ``base`` itself) and outside
    the platform's own data (uploads, other challenges' truth, the database), symlinks
    resolved; anything else is refused with one line.
    """
    jail = _Confinement(settings, roots if roots is not None else [base])
    base = jail.check(base, "base folder")
    slug = str(spec.get("slug", ""))
    if not _SLUG.match(slug):
        raise Invalid("slug: lower-case letters, digits and '-' only")
    challenge = Challenge(
        slug=slug,
        title=str(spec.get("title", slug)),
        description=str(spec.get("description", "")),
        licence=str(spec.get("licence", "")),
        auto_approve=bool(spec.get("auto_approve", False)),
        ranking_tasks=",".join(_ranking_tasks(spec.get("ranking"))),
    )
    db.add(challenge)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict(f"challenge {slug!r} already exists") from exc
    root = settings.challenge_dir(slug)
    shutil.rmtree(root, ignore_errors=True)  # left by an attempt that failed: the slug is free
    try:
        _load_files(db, settings, spec, base, jail, challenge)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # nothing half-copied stays downloadable
        raise
    for email in spec.get("organizers") or []:
        user = db.scalar(select(User).where(User.email == str(email).lower()))
        if user is None:
            raise Invalid(f"organizer {email} has no account")
        db.add(ChallengeOrganizer(challenge_id=challenge.id, user_id=user.id))
    record(db, actor, challenge, "create challenge", slug)
    db.flush()
    return challenge


def _load_files(
    db: Session,
    settings: Settings,
    spec: dict[str, Any],
    base: Path,
    jail: _Confinement,
    challenge: Challenge,
) -> None:
    """Create the phases with their cases, copying truth and downloads into the data folder."""
    root = settings.challenge_dir(challenge.slug)
    by_slug: dict[str, Phase] = {}
    truth: dict[Path, str] = {}
    for item in spec.get("phases") or []:
        phase = _make_phase(item, challenge, by_slug)
        db.add(phase)
        db.flush()
        sources = _sources(item.get("sources"), base, jail)
        for case, path in _copy_truth(item, base, root / "truth" / phase.slug, jail):
            rel = path.relative_to(settings.data_dir).as_posix()
            db.add(
                Case(phase_id=phase.id, case_id=case, source=sources.get(case, ""), truth_path=rel)
            )
            truth[path] = f"case {case} (phase {phase.slug})"
        by_slug[phase.slug] = phase
    if not by_slug:
        raise Invalid("a challenge needs at least one phase")
    downloads = list(spec.get("downloads") or [])
    _copy_downloads(downloads, base, root / "downloads", jail, _TruthGuard(truth))


def _ranking_tasks(spec: Any) -> list[str]:
    """The final ranking's metrics from the challenge file's ``ranking: {tasks: [...]}``."""
    if spec is None:
        return list(DEFAULT_RANKING_TASKS)
    if not isinstance(spec, dict) or set(spec) - {"tasks"}:
        raise Invalid("ranking: a mapping with one key, tasks (e.g. tasks: [dice, nsd, nave])")
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise Invalid("ranking.tasks: a non-empty list of metrics, e.g. [dice, nsd, nave]")
    names = [str(t) for t in tasks]
    unknown = [t for t in names if t not in RANKING_METRICS]
    if unknown:
        raise Invalid(
            f"ranking.tasks: unknown metric {unknown[0]!r}; known: {', '.join(RANKING_METRICS)}"
        )
    if len(set(names)) != len(names):
        raise Invalid(f"ranking.tasks: a metric is listed twice ({', '.join(names)})")
    return names


def _make_phase(item: dict[str, Any], challenge: Challenge, earlier: dict[str, Phase]) -> Phase:
    slug = str(item.get("slug", ""))
    if not _SLUG.match(slug):
        raise Invalid(f"phase slug {slug!r}: lower-case letters, digits and '-' only")
    kind = PhaseKind(str(item.get("kind", "validation")))
    metrics = [str(m) for m in item.get("metrics") or DEFAULT_METRICS]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise Invalid(f"phase {slug}: unknown metrics {unknown}; known: {', '.join(METRICS)}")
    ranking = str(item.get("ranking", "mean-position"))
    if ranking != "mean-position" and ranking not in metrics:
        raise Invalid(f"phase {slug}: ranking must be 'mean-position' or one of its metrics")
    requires = item.get("requires")
    if requires is not None and str(requires) not in earlier:
        raise Invalid(f"phase {slug}: requires unknown (or later) phase {requires!r}")
    opens = _when(item.get("opens", utcnow()), f"{slug}.opens")
    closes = _when(item.get("closes", datetime(2100, 1, 1)), f"{slug}.closes")
    if closes <= opens:
        raise Invalid(f"phase {slug}: closes before it opens")
    return Phase(
        challenge_id=challenge.id,
        slug=slug,
        title=str(item.get("title", slug.capitalize())),
        kind=kind,
        opens_at=opens,
        closes_at=closes,
        daily_limit=int(item.get("daily_limit", 1)),
        daily_attempts=int(item.get("daily_attempts", 5)),
        requires_phase_id=earlier[str(requires)].id if requires is not None else None,
        board_public=bool(item.get("board_public", kind is PhaseKind.validation)),
        ranking_method=ranking,
        metrics=metrics,
    )


def downloads(settings: Settings, challenge: Challenge) -> list[Path]:
    """The files approved participants may download."""
    folder = settings.challenge_dir(challenge.slug) / "downloads"
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def download(settings: Settings, challenge: Challenge, name: str) -> Path:
    """One download by its name in :func:`downloads` (a name, never a path, is looked up)."""
    files = {p.name: p for p in downloads(settings, challenge)}
    if name not in files:
        raise NotFound("no such file")
    return files[name]
