"""``covseg submit``: send a zip (or a folder) of masks to a challenge server from a script."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail


def _zip_folder(folder: Path) -> bytes:
    """The NIfTI files of a folder as an in-memory zip (names kept, no sub-folders)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise fail(f"{folder}: no .nii or .nii.gz files")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in files:
            zf.write(path, path.name)
    return buffer.getvalue()


@app.command()
def submit(
    predictions: Path = typer.Argument(..., help="A .zip of masks, or a folder of <case>.nii.gz."),
    challenge: str = typer.Option(..., "--challenge", "-c", help="The challenge's slug."),
    phase: str = typer.Option("validation", "--phase", "-p", help="validation or test."),
    server: str = typer.Option("http://127.0.0.1:8000", "--server", help="Platform address."),
    email: str | None = typer.Option(None, "--email", help="Log in with this account."),
    password: str | None = typer.Option(
        None, "--password", help="Asked for when not given (avoid it in shell history)."
    ),
    token: str | None = typer.Option(None, "--token", help="An API token instead of a log-in."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the score."),
    timeout: float = typer.Option(1800, "--timeout", help="Seconds to wait for the score."),
) -> None:
    """Submit predicted masks for your team and (by default) wait for the score.

    Example: ``covseg submit preds/ -c covid19-20 --email me@lab.org``
    """
    import time

    import httpx

    if not predictions.exists():
        raise fail(f"{predictions}: no such file or folder")
    data = _zip_folder(predictions) if predictions.is_dir() else predictions.read_bytes()
    base = server.rstrip("/")
    with httpx.Client(base_url=base, timeout=600) as client:
        if token is None:
            if email is None:
                raise fail("give --email (and the password when asked) or --token")
            if password is None:
                password = typer.prompt("password", hide_input=True)
            r = client.post("/api/auth/login", json={"email": email, "password": password})
            if r.status_code != 200:
                raise fail(f"log-in failed: {r.json().get('detail', r.text)}")
            token = r.json()["token"]
        headers = {"authorization": f"Bearer {token}"}
        url = f"/api/challenges/{challenge}/phases/{phase}/submissions"
        name = predictions.name if predictions.is_file() else f"{predictions.name}.zip"
        r = client.post(url, headers=headers, files={"file": (name, data, "application/zip")})
        if r.status_code != 202:
            raise fail(f"submission refused ({r.status_code}): {r.json().get('detail', r.text)}")
        sub = r.json()
        typer.echo(f"submission {sub['id']} accepted for team {sub['team']}: {sub['status']}")
        deadline = time.monotonic() + timeout
        while wait and sub["status"] in ("queued", "validating", "evaluating"):
            if time.monotonic() > deadline:
                raise fail(f"no score after {timeout:.0f} s; check {base}/submissions/{sub['id']}")
            time.sleep(2)
            sub = client.get(f"/api/submissions/{sub['id']}", headers=headers).json()
    if sub["status"] == "failed":
        raise fail(f"submission {sub['id']} failed: {sub['message']}")
    if sub["status"] == "succeeded" and sub.get("scores_hidden"):
        typer.echo(
            f"  scored; the scores of the {phase} phase stay hidden until the organizers "
            "publish its board"
        )
    elif sub["status"] == "succeeded":
        for source, metrics in sub["summary"].items():
            shown = ", ".join(
                f"{m} {v['mean']:.4f}"
                for m, v in metrics.items()
                if m in ("dice", "nsd", "nave") and v["mean"] is not None
            )
            typer.echo(f"  {source}: {shown}")
    typer.echo(f"details: {base}/submissions/{sub['id']}")
