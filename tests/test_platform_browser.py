"""The main flows in a real Chromium (Playwright) against a server started by the test."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_platform_support import (
    PASSWORD,
    LiveServer,
    Platform,
    build_platform,
    good_zip,
    scored,
)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Platform, LiveServer]]:
    """The tiny challenge on a real HTTP server."""
    platform = build_platform(tmp_path)
    server = LiveServer(platform)
    yield platform, server
    server.close()


def test_register_approve_download_submit_rank(
    live: tuple[Platform, LiveServer], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    platform, server = live
    url = server.url
    upload = tmp_path / "masks.zip"
    upload.write_bytes(good_zip())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        expect.set_options(timeout=20_000)
        dave = browser.new_context(accept_downloads=True).new_page()
        org = browser.new_context().new_page()

        # A newcomer signs up and asks to take part, accepting the licence.
        dave.goto(f"{url}/register")
        dave.fill("input[name=email]", "dave@example.org")
        dave.fill("input[name=password]", PASSWORD)
        dave.click("button[type=submit]")
        expect(dave.locator("#notice")).to_contain_text("log in")  # same answer for taken emails
        dave.fill("input[name=email]", "dave@example.org")
        dave.fill("input[name=password]", PASSWORD)
        dave.click("button[type=submit]")
        expect(dave.locator("#whoami")).to_have_text("dave@example.org")
        dave.goto(f"{url}/challenges/tiny")
        dave.check("input[name=accept_licence]")
        dave.click("#register-button")
        expect(dave.locator("#registration-status")).to_have_text("pending")

        # The organizer approves the registration.
        org.goto(f"{url}/login")
        org.fill("input[name=email]", "org@example.org")
        org.fill("input[name=password]", PASSWORD)
        org.click("button[type=submit]")
        org.goto(f"{url}/challenges/tiny/admin")
        org.click("button[data-email='dave@example.org'][data-action=approve]")
        expect(org.locator("#audit")).to_contain_text("approved registration")

        # Approved: download the data, found a team, submit with the progress bar, see the score.
        dave.reload()
        expect(dave.locator("#registration-status")).to_have_text("approved")
        dave.click("#data-link")
        with dave.expect_download() as download:
            dave.click("text=train.zip")
        assert download.value.suggested_filename == "train.zip"
        dave.goto(f"{url}/challenges/tiny")
        dave.fill("input[name=name]", "daves")
        dave.click("#create-team")
        expect(dave.locator("#team-name")).to_have_text("daves")
        dave.click("#submit-validation")
        dave.set_input_files("#file", str(upload))
        dave.click("#upload-button")
        dave.wait_for_url(re.compile(r"/submissions/\d+$"))
        expect(dave.locator("#status")).to_have_text("succeeded")
        expect(dave.locator("#results")).to_contain_text("case-B-001")
        dave.goto(f"{url}/challenges/tiny/phases/validation/leaderboard")
        expect(dave.locator("#leaderboard")).to_contain_text("daves")
        dave.goto(f"{url}/challenges/tiny/phases/test/leaderboard")
        expect(dave.locator("#error")).to_contain_text("not published")

        # Two teams reach the test phase; the organizer publishes the board and the ranking.
        for shift, email in enumerate(("alice@example.org", "bob@example.org")):
            scored(platform, email, "validation", shift)
            scored(platform, email, "test", shift)
        org.goto(f"{url}/challenges/tiny/admin")
        org.click("#board-test")
        org.fill("input[name=bootstrap]", "20")
        org.click("#run-ranking")
        org.wait_for_url(re.compile(r"/ranking/report\.html$"))
        expect(org.locator("body")).to_contain_text("team-alice")
        dave.goto(f"{url}/challenges/tiny/phases/test/leaderboard")
        expect(dave.locator("#leaderboard")).to_contain_text("team-bob")
        dave.goto(f"{url}/challenges/tiny")
        expect(dave.locator("#ranking-report")).to_be_visible()
        browser.close()
