"""Issue 22's probes of log-in, sign-up, browser hardening and challenge files, as tests.

Each test replays an attack that worked before the fix: guessing passwords, telling who has
an account from the answer or its timing, oversize fields, framing and inline code, a docs page
that needs a CDN, and a challenge spec that reads files outside its folder.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_platform_support import BACKENDS, PASSWORD, Platform, build_platform, platform_on

from covseg.platform import security
from covseg.platform.app import create_app
from covseg.platform.services import accounts
from covseg.platform.services.errors import NotAuthenticated, TooManyAttempts
from covseg.platform.services.throttle import LoginThrottle
from covseg.platform.tasks import make_queue


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path)


@pytest.fixture(params=BACKENDS)
def db_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Platform:
    """The tiny challenge on SQLite, and on PostgreSQL where one is configured."""
    return platform_on(request.param, tmp_path)


@pytest.fixture
def db_client(db_platform: Platform) -> Iterator[TestClient]:
    queue = make_queue(db_platform.settings, db_platform.factory)
    with TestClient(create_app(db_platform.settings, queue)) as c:
        yield c


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(
        create_app(platform.settings, make_queue(platform.settings, platform.factory))
    ) as c:
        yield c


def api_login(client: TestClient, email: str, password: str) -> int:
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    return r.status_code


def csrf(client: TestClient, path: str) -> str:
    """The CSRF token of a page's form (the anonymous cookie's)."""
    page = client.get(path).text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


# -- 5. log-in resists guessing ----------------------------------------------------------------


def test_wrong_passwords_back_off_and_refuse_even_the_right_one(client: TestClient) -> None:
    clock = FakeClock()
    client.app.state.login_throttle.clock = clock  # type: ignore[attr-defined]
    codes = [api_login(client, "alice@example.org", "wrong-guess") for _ in range(5)]
    assert codes == [401] * 5
    r = client.post("/api/auth/login", json={"email": "alice@example.org", "password": "nope"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 1
    # While it must wait, the right password is refused too (and not even checked).
    assert api_login(client, "alice@example.org", PASSWORD) == 429
    clock.now += 1.0
    assert api_login(client, "alice@example.org", "wrong-again") == 401
    r = client.post("/api/auth/login", json={"email": "alice@example.org", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 2  # doubled
    clock.now += 2.0
    assert api_login(client, "alice@example.org", PASSWORD) == 200
    # A success forgets the account's failures; other accounts were never slowed.
    assert api_login(client, "alice@example.org", "one-typo") == 401
    assert api_login(client, "bob@example.org", PASSWORD) == 200


def test_back_off_grows_to_the_cap_so_ninety_guesses_take_hours() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(free_per_account=5, free_per_client=10**6, max_s=900, clock=clock)
    start = clock.now
    for _ in range(90):
        while True:
            try:
                throttle.attempt("alice@example.org", "10.0.0.1")
                break
            except TooManyAttempts as exc:
                clock.now += exc.retry_after_s
    # 5 free, then 1 + 2 + ... + 512 s, then 900 s for each of the other 75 guesses.
    assert clock.now - start == pytest.approx(sum(2.0**k for k in range(10)) + 75 * 900)


def test_unknown_emails_count_too_and_address_has_its_own_budget() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(free_per_account=3, free_per_client=4, clock=clock)
    for i in range(4):  # four different accounts from one address: the address's budget
        throttle.attempt(f"nobody{i}@example.org", "10.0.0.9")
    with pytest.raises(TooManyAttempts):
        throttle.attempt("someone-else@example.org", "10.0.0.9")
    throttle.attempt("someone-else@example.org", "10.0.0.10")  # another address is free
    # Whether the account exists plays no part: the key is the email as typed.
    for _ in range(2):
        throttle.attempt("Ghost@Example.org ", "10.0.0.11")
    throttle.attempt("ghost@example.org", "10.0.0.12")
    with pytest.raises(TooManyAttempts):
        throttle.attempt("ghost@example.org", "10.0.0.13")


def test_concurrent_guesses_are_counted_before_they_are_checked() -> None:
    throttle = LoginThrottle(free_per_account=5, free_per_client=10**6)
    passed: list[bool] = []
    barrier = threading.Barrier(32)

    def guess() -> None:
        barrier.wait()
        try:
            throttle.attempt("alice@example.org", "10.0.0.1")
            passed.append(True)
        except TooManyAttempts:
            passed.append(False)

    threads = [threading.Thread(target=guess) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(passed) == 5


def test_password_hashing_runs_at_most_n_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 concurrent verifications hold at most ``hash_concurrency`` argon2 buffers."""
    running = peak = 0
    lock = threading.Lock()
    real = security._hasher

    class Counting:
        def verify(self, hashed: str, password: str) -> bool:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return real.verify(hashed, password)

    stored = security.hash_password(PASSWORD)
    monkeypatch.setattr(security, "_hasher", Counting())
    security.set_hash_concurrency(2)
    threads = [
        threading.Thread(target=security.verify_password, args=(stored, "wrong-one"))
        for _ in range(32)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_unknown_email_and_wrong_password_cost_the_same(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One argon2 verification either way, so the times match (236 ms vs 4 ms before)."""
    calls: list[str] = []
    real = security.verify_password
    monkeypatch.setattr(security, "verify_password", lambda h, p: calls.append(p) or real(h, p))
    monkeypatch.setattr(accounts, "verify_password", security.verify_password)
    security.set_hash_cost(time_cost=3, memory_kib=16 * 1024)  # ~10 ms: well above the noise
    try:
        with platform.db() as db:
            alice = platform.user(db, "alice@example.org")
            alice.password_hash = security.hash_password(PASSWORD)  # at this cost
            security.burn_verification("warm-up")  # the dummy hash is made once
            calls.clear()
            times: dict[str, list[float]] = {"unknown": [], "wrong": []}
            messages = set()
            for _ in range(7):
                for kind, email in (("unknown", "nobody@example.org"), ("wrong", alice.email)):
                    start = time.perf_counter()
                    with pytest.raises(NotAuthenticated) as exc:
                        accounts.authenticate(db, email, "not-the-password")
                    times[kind].append(time.perf_counter() - start)
                    messages.add(str(exc.value))
    finally:
        security.set_hash_cost(time_cost=1, memory_kib=64)
    assert messages == {"wrong email or password"}
    assert len(calls) == 14  # every attempt verified exactly once
    ratio = statistics.median(times["unknown"]) / statistics.median(times["wrong"])
    assert 0.5 < ratio < 2.0, times


def test_sign_up_does_not_tell_whether_the_email_has_an_account(
    db_client: TestClient, db_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real_hash = accounts.hash_password
    monkeypatch.setattr(accounts, "hash_password", lambda p: hashed.append(p) or real_hash(p))
    taken = db_client.post(
        "/api/auth/register", json={"email": "Alice@example.org", "password": "another-one-1"}
    )
    assert len(hashed) == 1  # the same work as for a free email: no faster "taken"
    free = db_client.post(
        "/api/auth/register", json={"email": "newbie@example.org", "password": "another-one-1"}
    )
    assert len(hashed) == 2
    assert (taken.status_code, taken.json()) == (free.status_code, free.json())
    # The existing account keeps its password; the new one works.
    assert api_login(db_client, "alice@example.org", "another-one-1") == 401
    assert api_login(db_client, "alice@example.org", PASSWORD) == 200
    assert api_login(db_client, "newbie@example.org", "another-one-1") == 200
    # The page answers alike too: both go to the log-in form with the same notice.
    answers = []
    for email in ("bob@example.org", "newcomer@example.org"):
        form = {
            "email": email,
            "password": "whatever-1",
            "csrf_token": csrf(db_client, "/register"),
        }
        r = db_client.post("/register", data=form, follow_redirects=False)
        answers.append((r.status_code, r.headers.get("location"), "set-cookie" in r.headers))
    assert answers[0] == answers[1] == (303, "/login?signed_up=1", False)
    assert accounts.SIGNED_UP in db_client.get("/login?signed_up=1").text


def test_login_form_says_wrong_email_or_password_and_keeps_next(client: TestClient) -> None:
    for email in ("alice@example.org", "nobody@example.org"):
        form = {
            "email": email,
            "password": "bad-password",
            "next": "/challenges/tiny/submissions",
            "csrf_token": csrf(client, "/login"),
        }
        r = client.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 401
        assert "wrong email or password" in r.text
        assert 'name="next" value="/challenges/tiny/submissions"' in r.text
    form["email"], form["password"] = "alice@example.org", PASSWORD
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/challenges/tiny/submissions"


@pytest.mark.parametrize(
    ("field", "size"),
    [("email", 255), ("password", 257), ("name", 121)],
)
def test_text_fields_are_bounded_at_the_edge(client: TestClient, field: str, size: int) -> None:
    body = {"email": "long@example.org", "password": PASSWORD, "name": "Long"}
    body[field] = "x" * (size - 12) + "@example.org" if field == "email" else "x" * size
    assert client.post("/api/auth/register", json=body).status_code == 422
    if field != "name":
        login = {"email": body["email"], "password": body["password"]}
        assert client.post("/api/auth/login", json=login).status_code == 422
    form = {**body, "csrf_token": csrf(client, "/register")}
    r = client.post("/register", data=form, follow_redirects=False)
    assert r.status_code == 400 and "at most" in r.text


def test_team_name_and_join_code_are_bounded(client: TestClient) -> None:
    token = client.post(
        "/api/auth/login", json={"email": "carol@example.org", "password": PASSWORD}
    ).json()["token"]
    who = {"authorization": f"Bearer {token}"}
    r = client.post("/api/challenges/tiny/teams", json={"name": "t" * 121}, headers=who)
    assert r.status_code == 422
    r = client.post("/api/challenges/tiny/teams/join", json={"join_code": "j" * 101}, headers=who)
    assert r.status_code == 422


# -- 6. browser hardening ----------------------------------------------------------------------

HARDENING = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@pytest.mark.parametrize(
    "path", ["/", "/login", "/challenges/tiny", "/nowhere", "/api/challenges", "/api/docs"]
)
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    for name, value in HARDENING.items():
        assert r.headers[name] == value, name
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "strict-transport-security" not in r.headers  # plain HTTP: HSTS means nothing


def test_pages_have_no_inline_code(client: TestClient) -> None:
    """What the CSP forbids must not be on the pages: inline scripts, handlers, styles."""
    for path in ("/", "/login", "/register", "/challenges/tiny", "/api/docs"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+=|javascript:|<style|\sstyle=", html), path


def _login_cookies(client: TestClient) -> list[str]:
    form = {
        "email": "alice@example.org",
        "password": PASSWORD,
        "csrf_token": csrf(client, "/login"),
    }
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303
    return r.headers.get_list("set-cookie")


def test_cookies_are_secure_over_https_and_when_asked(platform: Platform) -> None:
    queue = make_queue(platform.settings, platform.factory)
    with TestClient(create_app(platform.settings, queue)) as plain:
        first = plain.get("/login").headers["set-cookie"]
        assert "secure" not in first.lower()
        assert all("secure" not in c.lower() for c in _login_cookies(plain))
    # Behind HTTPS (directly, or a trusted proxy's X-Forwarded-Proto): Secure and HSTS.
    with TestClient(create_app(platform.settings, queue), base_url="https://testserver") as tls:
        r = tls.get("/login")
        assert "secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert all("secure" in c.lower() for c in _login_cookies(tls))
    # --secure-cookies: always (a proxy that does not say it spoke HTTPS) ...
    platform.settings.secure_cookies = True
    with TestClient(create_app(platform.settings, queue)) as forced:
        r = forced.get("/login")
        assert "secure" in r.headers["set-cookie"].lower()
        assert "strict-transport-security" in r.headers
    # ... and --no-secure-cookies: never.
    platform.settings.secure_cookies = False
    with TestClient(create_app(platform.settings, queue), base_url="https://testserver") as off:
        assert all("secure" not in c.lower() for c in _login_cookies(off))
        assert "strict-transport-security" not in off.get("/").headers


def test_api_docs_need_no_other_host(client: TestClient) -> None:
    html = client.get("/api/docs").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 100, url
    assert "SwaggerUIBundle" in client.get("/api/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/api/openapi.json").json()["info"]["title"]


@pytest.mark.browser
def test_pages_and_api_docs_work_under_the_csp_in_chromium(platform: Platform) -> None:
    """No CSP violation on the pages; Swagger UI renders from local assets, offline."""
    pytest.importorskip("playwright")
    from playwright.sync_api import Page, expect, sync_playwright
    from test_platform_browser import ARGS, CHROMIUM
    from test_platform_support import LiveServer

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium")
    server = LiveServer(platform)
    violations: list[str] = []
    foreign: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)

            def logged_in(email: str, target: str) -> Page:
                context = browser.new_context()
                context.route(  # offline: any request off this server fails and is recorded
                    re.compile(r"^(?!" + re.escape(server.url) + ").*"),
                    lambda route: (foreign.append(route.request.url), route.abort()),
                )
                page = context.new_page()
                page.on(
                    "console",
                    lambda m: (
                        violations.append(m.text) if "Content Security Policy" in m.text else None
                    ),
                )
                page.goto(f"{server.url}/login?next={target}")
                page.fill("input[name=email]", email)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                return page

            page = logged_in("alice@example.org", "/challenges/tiny/phases/validation/submit")
            expect(page.locator("#upload-form")).to_be_visible()  # upload.js loaded
            for path in (
                "/",
                "/challenges/tiny",
                "/challenges/tiny/submissions",
                "/challenges/tiny/phases/validation/leaderboard",
                "/account",
                "/nowhere",
            ):
                page.goto(server.url + path)
            page.goto(f"{server.url}/api/docs")
            expect(page.locator("#swagger-ui .info .title")).to_contain_text(
                "covseg", timeout=20_000
            )
            expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
            org = logged_in("org@example.org", "/challenges/tiny/admin")
            expect(org.locator("#audit")).to_be_visible()
            browser.close()
    finally:
        server.close()
    assert violations == [] and foreign == [], (violations, foreign)


# -- 8. a challenge file cannot reach outside its folders --------------------------------------


def _spec(**extra: object) -> dict[str, object]:
    return {"slug": "second", "phases": [{"slug": "validation", "truth": "labels"}], **extra}


def _create(platform: Platform, spec: dict[str, object], base: Path, **kw: object) -> str:
    """The refusal's message ('' when the challenge was created)."""
    from covseg.platform.services import challenges
    from covseg.platform.services.errors import ServiceError

    try:
        with platform.db() as db, db.begin():
            challenges.create_challenge(db, platform.settings, spec, base, **kw)  # type: ignore[arg-type]
    except ServiceError as exc:
        return str(exc)
    return ""


@pytest.fixture
def organizer_dir(tmp_path: Path) -> Path:
    from test_platform_support import write_truth

    folder = tmp_path / "organizer"
    write_truth(folder / "labels")
    (folder / "notes.txt").write_text("read me")
    return folder


def test_downloads_and_truth_stay_inside_the_spec_folder(
    platform: Platform, organizer_dir: Path, tmp_path: Path
) -> None:
    other_truth = platform.settings.challenge_dir("tiny") / "truth" / "validation"
    assert other_truth.is_dir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("not yours")
    (organizer_dir / "passwd-link").symlink_to("/etc/passwd")
    (organizer_dir / "truth-link").symlink_to(other_truth)
    (organizer_dir / "bundle").mkdir()
    (organizer_dir / "bundle" / "secret.txt").symlink_to(tmp_path / "elsewhere" / "secret.txt")
    refused = {
        "/etc/passwd": _spec(downloads=["/etc/passwd"]),
        "../elsewhere": _spec(downloads=["../elsewhere/secret.txt"]),
        "a link to /etc/passwd": _spec(downloads=["passwd-link"]),
        "a file linked out of a folder": _spec(downloads=["bundle"]),
        "another challenge's truth": _spec(phases=[{"slug": "v", "truth": str(other_truth)}]),
        "a link to it": _spec(phases=[{"slug": "v", "truth": "truth-link"}]),
        "the database": _spec(downloads=[str(platform.settings.data_dir / "platform.db")]),
    }
    for case, spec in refused.items():
        message = _create(platform, spec, organizer_dir)
        assert message and "\n" not in message, case
        assert "outside the folders" in message or "platform's own data" in message, case
        assert not platform.settings.challenge_dir("second").exists(), case  # nothing copied
    # Inside the folder, and an explicitly allowed one, are fine.
    spec = _spec(downloads=["notes.txt", "../elsewhere/secret.txt"])
    assert (
        _create(platform, spec, organizer_dir, roots=[organizer_dir, tmp_path / "elsewhere"]) == ""
    )
    downloads = platform.settings.challenge_dir("second") / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == ["notes.txt", "secret.txt"]


def test_a_truth_file_linked_to_another_challenge_is_refused(
    platform: Platform, organizer_dir: Path
) -> None:
    other = platform.settings.challenge_dir("tiny") / "truth" / "validation"
    stolen = sorted(other.iterdir())[0]
    (organizer_dir / "labels" / "case-X-009_seg.nii.gz").symlink_to(stolen)
    message = _create(platform, _spec(), organizer_dir)
    assert "case-X-009_seg.nii.gz" in message and "platform's own data" in message


def test_downloads_never_hand_out_the_truth(platform: Platform, organizer_dir: Path) -> None:
    import shutil

    shutil.copytree(organizer_dir / "labels", organizer_dir / "public" / "copy")
    (organizer_dir / "public" / "readme.txt").write_text("the training data")
    for downloads in (["."], ["labels"], ["public"], ["labels/case-A-001_seg.nii.gz"]):
        message = _create(platform, _spec(downloads=downloads), organizer_dir)
        assert "is the ground truth of case case-A-00" in message, (downloads, message)
        assert "(phase validation)" in message
    shutil.rmtree(organizer_dir / "public" / "copy")
    assert _create(platform, _spec(downloads=["public"]), organizer_dir) == ""


def test_challenge_create_refuses_etc_passwd_in_one_line(
    organizer_dir: Path, tmp_path: Path
) -> None:
    import yaml
    from typer.testing import CliRunner

    from covseg.cli import app

    spec_file = organizer_dir / "challenge.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(downloads=["/etc/passwd"])))
    args = ["challenge", "create", str(spec_file), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "/etc/passwd" in lines[0] and "outside the folders" in lines[0]
    # --allow-dir names another folder that may be read.
    spec_file.write_text(yaml.safe_dump(_spec(downloads=["../extra/a.txt"])))
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "a.txt").write_text("data")
    assert CliRunner().invoke(app, args).exit_code == 1
    result = CliRunner().invoke(app, [*args, "--allow-dir", str(tmp_path / "extra")])
    assert result.exit_code == 0, result.output


def test_server_side_creation_reads_only_the_source_dirs(
    client: TestClient, platform: Platform, organizer_dir: Path
) -> None:
    with platform.db() as db, db.begin():
        platform.user(db, "org@example.org").is_admin = True
    token = client.post(
        "/api/auth/login", json={"email": "org@example.org", "password": PASSWORD}
    ).json()["token"]
    who = {"authorization": f"Bearer {token}"}
    body = {"spec": _spec(), "base_dir": str(organizer_dir)}
    r = client.post("/api/admin/challenges", json=body, headers=who)
    assert r.status_code == 400 and "outside the folders" in r.json()["detail"]
    r = client.post("/api/admin/challenges", json={**body, "base_dir": "/"}, headers=who)
    assert r.status_code == 400
    platform.settings.source_dirs = [organizer_dir.parent]  # covseg serve --source-dir
    r = client.post("/api/admin/challenges", json=body, headers=who)
    assert r.status_code == 201, r.text


# -- API tokens and "log out everywhere" -------------------------------------------------------


def bearer(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


def test_api_token_acts_on_its_challenge_only_until_revoked(
    db_client: TestClient, db_platform: Platform, organizer_dir: Path
) -> None:
    from test_platform_support import good_zip

    assert _create(db_platform, _spec(), organizer_dir) == ""  # a second challenge
    alice = bearer(db_client, "alice@example.org")
    r = db_client.post(
        "/api/auth/tokens", json={"name": "cluster", "challenge": "tiny"}, headers=alice
    )
    assert r.status_code == 201
    made = r.json()
    assert made["token"].startswith("covseg_pat_") and made["challenge"] == "tiny"
    tok = {"authorization": f"Bearer {made['token']}"}
    files = {"file": ("m.zip", good_zip(), "application/zip")}
    r = db_client.post(
        "/api/challenges/tiny/phases/validation/submissions", files=files, headers=tok
    )
    assert r.status_code == 202, r.text
    assert db_client.get(f"/api/submissions/{r.json()['id']}", headers=tok).status_code == 200
    # Not the account, not organizer routes, not another challenge.
    assert db_client.get("/api/auth/me", headers=tok).status_code == 403
    r = db_client.post("/api/auth/tokens", json={"name": "x", "challenge": "tiny"}, headers=tok)
    assert r.status_code == 403
    r = db_client.post(
        "/api/challenges/second/registration", json={"accept_licence": True}, headers=tok
    )
    assert r.status_code == 403
    org_token = db_client.post(
        "/api/auth/tokens",
        json={"name": "org", "challenge": "tiny"},
        headers=bearer(db_client, "org@example.org"),
    ).json()["token"]
    org_tok = {"authorization": f"Bearer {org_token}"}
    assert (
        db_client.get("/api/challenges/tiny/admin/registrations", headers=org_tok).status_code
        == 403
    )
    # Listed without the secret, with when it was last used; revoked at once.
    listed = db_client.get("/api/auth/tokens", headers=alice).json()
    assert [(t["name"], t["challenge"]) for t in listed] == [("cluster", "tiny")]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is not None
    bob = bearer(db_client, "bob@example.org")
    assert db_client.delete(f"/api/auth/tokens/{made['id']}", headers=bob).status_code == 404
    assert db_client.delete(f"/api/auth/tokens/{made['id']}", headers=alice).status_code == 204
    r = db_client.get("/api/challenges/tiny/phases/validation/submissions", headers=tok)
    assert r.status_code == 401


def test_password_change_logs_out_everywhere(db_client: TestClient) -> None:
    laptop, desktop = bearer(db_client, "alice@example.org"), bearer(db_client, "alice@example.org")
    token = db_client.post(
        "/api/auth/tokens", json={"name": "ci", "challenge": "tiny"}, headers=laptop
    ).json()["token"]
    form = {
        "email": "alice@example.org",
        "password": PASSWORD,
        "csrf_token": csrf(db_client, "/login"),
    }
    assert db_client.post("/login", data=form, follow_redirects=False).status_code == 303
    assert db_client.get("/account").status_code == 200  # the browser is logged in
    wrong = {"current_password": "not-it-at-all", "new_password": "a-new-secret-1"}
    assert db_client.post("/api/auth/password", json=wrong, headers=laptop).status_code == 401
    body = {"current_password": PASSWORD, "new_password": "a-new-secret-1"}
    r = db_client.post("/api/auth/password", json=body, headers=laptop)
    assert r.status_code == 200
    fresh = {"authorization": f"Bearer {r.json()['token']}"}
    for old in (laptop, desktop):
        assert db_client.get("/api/auth/me", headers=old).status_code == 401
    assert db_client.get("/api/auth/me", headers=fresh).status_code == 200
    page = db_client.get("/account", follow_redirects=False)  # the browser's cookie is dead too
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert api_login(db_client, "alice@example.org", PASSWORD) == 401
    assert api_login(db_client, "alice@example.org", "a-new-secret-1") == 200
    # API tokens are kept (listed on the account page, revoked one by one).
    r = db_client.get(
        "/api/challenges/tiny/phases/validation/submissions",
        headers={"authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    db_client.post("/api/auth/logout-everywhere", headers=fresh)
    assert db_client.get("/api/auth/me", headers=fresh).status_code == 401


def test_account_page_creates_shows_once_and_revokes_tokens(client: TestClient) -> None:
    form = {"email": "bob@example.org", "password": PASSWORD, "csrf_token": csrf(client, "/login")}
    client.post("/login", data=form)
    token_csrf = csrf(client, "/account")
    r = client.post(
        "/account/tokens", data={"name": "laptop", "challenge": "tiny", "csrf_token": token_csrf}
    )
    shown = re.search(r"<code>(covseg_pat_[^<]+)</code>", r.text)
    assert r.status_code == 200 and shown
    assert shown.group(1) not in client.get("/account").text  # only once
    who = {"authorization": f"Bearer {shown.group(1)}"}
    assert (
        client.get("/api/challenges/tiny/phases/validation/submissions", headers=who).status_code
        == 200
    )
    token_id = client.get("/api/auth/tokens", headers=bearer(client, "bob@example.org")).json()[0][
        "id"
    ]
    client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token_csrf})
    assert (
        client.get("/api/challenges/tiny/phases/validation/submissions", headers=who).status_code
        == 401
    )
    r = client.post(
        "/account/logout-everywhere", data={"csrf_token": token_csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_covseg_submit_takes_the_token_from_the_environment_or_a_file(
    platform: Platform, tmp_path: Path
) -> None:
    import io
    import zipfile

    from test_platform_support import LiveServer, good_zip
    from typer.testing import CliRunner

    from covseg.cli import app
    from covseg.platform.models import Challenge
    from covseg.platform.services import challenges

    with platform.db() as db, db.begin():
        ch = challenges.get_challenge(db, "tiny")
        assert isinstance(ch, Challenge)
        token, _ = accounts.create_api_token(db, platform.user(db, "alice@example.org"), ch, "cli")
        bob_token, _ = accounts.create_api_token(db, platform.user(db, "bob@example.org"), ch, "b")
    folder = tmp_path / "preds"
    folder.mkdir()
    with zipfile.ZipFile(io.BytesIO(good_zip())) as zf:
        zf.extractall(folder)
    server = LiveServer(platform)
    try:
        base = ["submit", str(folder), "-c", "tiny", "--server", server.url]
        runner = CliRunner()
        result = runner.invoke(app, base, env={"COVSEG_TOKEN": token})
        assert result.exit_code == 0, result.output
        assert "accepted for team team-alice" in result.output
        (tmp_path / "token").write_text(bob_token + "\n")
        result = runner.invoke(app, [*base, "--token-file", str(tmp_path / "token"), "--no-wait"])
        assert result.exit_code == 0 and "team-bob" in result.output, result.output
        result = runner.invoke(app, base, env={"COVSEG_TOKEN": ""})
        assert result.exit_code == 1 and "COVSEG_TOKEN" in result.output
        missing = runner.invoke(app, [*base, "--token-file", str(tmp_path / "nope")])
        assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    finally:
        server.close()


@pytest.mark.parametrize("target", ["//evil.example", "/\\evil.example", "/\t/evil.example"])
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    form = {
        "email": "alice@example.org",
        "password": PASSWORD,
        "next": target,
        "csrf_token": csrf(client, "/login"),
    }
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_an_old_cheaper_hash_is_replaced_at_the_next_good_log_in(platform: Platform) -> None:
    """A hash made at another cost would tell, by its time, that the account exists."""
    with platform.db() as db, db.begin():
        alice = platform.user(db, "alice@example.org")
        old = alice.password_hash
        security.set_hash_cost(time_cost=2, memory_kib=128)
        try:
            assert security.needs_rehash(old)
            accounts.authenticate(db, "alice@example.org", PASSWORD)
            assert alice.password_hash != old and not security.needs_rehash(alice.password_hash)
        finally:
            security.set_hash_cost(time_cost=1, memory_kib=64)
        assert security.verify_password(alice.password_hash, PASSWORD)
