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


def _token(token_file: Path | None, env_token: str | None) -> str | None:
    """The API token from --token-file or COVSEG_TOKEN (never from the command line)."""
    if token_file is not None:
        try:
            text = token_file.read_text().strip()
        except OSError as exc:
            raise fail(f"{token_file}: cannot read the token ({exc.strerror})") from exc
        if not text:
            raise fail(f"{token_file}: empty; put the API token from your account page in it")
        return text
    return env_token.strip() if env_token else None


@app.command()
def submit(
    predictions: Path = typer.Argument(..., help="A .zip of masks, or a folder of <case>.nii.gz."),
    challenge: str = typer.Option(..., "--challenge", "-c", help="The challenge's slug."),
    phase: str = typer.Option("validation", "--phase", "-p", help="validation or test."),
    server: str = typer.Option("http://127.0.0.1:8000", "--server", help="Platform address."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File holding an API token (see your account page)."
    ),
    email: str | None = typer.Option(
        None, "--email", help="Log in with this account instead; the password is asked for."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the score."),
    timeout: float = typer.Option(1800, "--timeout", help="Seconds to wait for the score."),
) -> None:
    """Submit predicted masks for your team and (by default) wait for the score.

    Authenticates with a long-lived API token for the challenge (create one on the account
    page of the server), read from the environment variable COVSEG_TOKEN or from
    --token-file, so that no secret appears on the command line; or, interactively, with
    --email and a password prompt.

    Example: ``COVSEG_TOKEN=$(cat ~/.covseg-token) covseg submit preds/ -c covid19-20``
    """
    import os
    import time

    import httpx

    if not predictions.exists():
        raise fail(f"{predictions}: no such file or folder")
    token = _token(token_file, os.environ.get("COVSEG_TOKEN"))
    data = _zip_folder(predictions) if predictions.is_dir() else predictions.read_bytes()
    base = server.rstrip("/")
    with httpx.Client(base_url=base, timeout=600) as client:
        if token is None:
            if email is None:
                raise fail("set COVSEG_TOKEN or give --token-file (an API token), or --email")
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
            r = client.get(f"/api/submissions/{sub['id']}", headers=headers)
            if r.status_code != 200:
                raise fail(
                    f"cannot follow submission {sub['id']}: {r.json().get('detail', r.text)}"
                )
            sub = r.json()
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
