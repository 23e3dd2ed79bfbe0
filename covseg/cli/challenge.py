"""``covseg challenge create|rank``: organizer tools of the challenge platform."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail

challenge_app = typer.Typer(
    help="Organizer tools: define a challenge, run its final ranking.", no_args_is_help=True
)
app.add_typer(challenge_app, name="challenge")

DATA_DIR = typer.Option(Path("covseg-data"), "--data-dir", help="The platform's data folder.")
DATABASE = typer.Option(None, "--database", help="Database URL; default SQLite in --data-dir.")


@challenge_app.command("create")
def create(
    spec_file: Path = typer.Argument(..., help="challenge.yaml (see docs/platform.md)."),
    data_dir: Path = DATA_DIR,
    database: str | None = DATABASE,
    allow_dirs: list[Path] | None = typer.Option(
        None,
        "--allow-dir",
        help="Another folder the spec's truth and downloads may come from (repeatable); "
        "the spec's own folder always may.",
    ),
) -> None:
    """Define a challenge, its phases, limits and cases, and load its ground truth.

    Truth, downloads and sources files must lie in the spec's folder or an --allow-dir
    (symlinks resolved), never in the platform's own data. Organizer emails without an
    account get one; their passwords are printed once.

    Example: ``covseg challenge create challenge.yaml --data-dir covseg-data``
    """
    import secrets

    import yaml
    from sqlalchemy import select

    from covseg.platform.config import Settings
    from covseg.platform.db import make_engine, session_factory, upgrade
    from covseg.platform.models import User
    from covseg.platform.services import accounts, challenges
    from covseg.platform.services.errors import ServiceError

    if not spec_file.is_file():
        raise fail(f"{spec_file}: no such file")
    try:
        spec = yaml.safe_load(spec_file.read_text())
    except yaml.YAMLError as exc:
        raise fail(f"{spec_file}: not valid YAML ({exc})") from exc
    if not isinstance(spec, dict):
        raise fail(f"{spec_file}: expected a mapping of challenge settings")
    settings = Settings(data_dir=data_dir, database_url=database)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    upgrade(engine)
    created: list[tuple[str, str]] = []
    try:
        with session_factory(engine)() as db, db.begin():
            for email in spec.get("organizers") or []:
                if db.scalar(select(User).where(User.email == str(email).lower())) is None:
                    password = secrets.token_urlsafe(12)
                    accounts.register_user(db, str(email), password)
                    created.append((str(email), password))
            base = spec_file.resolve().parent
            roots = [base, *(allow_dirs or [])]
            challenge = challenges.create_challenge(db, settings, spec, base, roots=roots)
            summary = [(p.slug, p.kind.value, len(p.cases)) for p in challenge.phases]
    except ServiceError as exc:
        raise fail(f"{spec_file}: {exc}") from exc
    typer.echo(f"created challenge {challenge.slug!r} in {settings.data_dir}")
    for slug, kind, n in summary:
        typer.echo(f"  phase {slug} ({kind}): {n} cases")
    for email, password in created:
        typer.echo(f"  new organizer account {email}, password {password}")


@challenge_app.command("rank")
def rank(
    slug: str = typer.Argument(..., help="The challenge's slug."),
    phase: str = typer.Option("test", "--phase", help="Phase whose counted submissions rank."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap samples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    data_dir: Path = DATA_DIR,
    database: str | None = DATABASE,
) -> None:
    """Run the final ranking (test-then-rank, Holm, bootstrap, consensus) and publish it.

    Example: ``covseg challenge rank covid19-20 --data-dir covseg-data``
    """
    import logging

    from covseg.platform.config import Settings
    from covseg.platform.db import make_engine, session_factory, upgrade
    from covseg.platform.services import challenges, ranking
    from covseg.platform.services.errors import ServiceError

    # A failed ranking is reported in the one line below; its traceback is for server logs.
    logging.getLogger(ranking.__name__).addHandler(logging.NullHandler())
    settings = Settings(data_dir=data_dir, database_url=database)
    engine = make_engine(settings.url)
    upgrade(engine)
    try:
        with session_factory(engine)() as db, db.begin():
            ch = challenges.get_challenge(db, slug)
            report = ranking.run_final_ranking(db, settings, None, ch, phase, bootstrap, seed)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"published the final ranking: {report}")
    typer.echo(f"on the server at /challenges/{slug}/ranking/report.html")
