"""Browser hardening: the security headers of every response and the ``Secure`` cookie rule."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Only this site's own scripts, styles, images and fonts; no framing, plug-ins or foreign
#: form targets. Pages keep their scripts and styles in /static (no inline code).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: The published ranking report is a stand-alone HTML file (it opens from disk too) with its
#: style inline; it runs no script.
REPORT_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
HSTS = "max-age=31536000"
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def is_secure(conn: HTTPConnection, setting: bool | None) -> bool:
    """Whether cookies get ``Secure`` and responses HSTS (``None``: the request used HTTPS)."""
    return conn.url.scheme == "https" if setting is None else setting


def _is_report(path: str) -> bool:
    parts = path.split("/")
    return len(parts) > 4 and parts[1] == "challenges" and parts[3] == "ranking"


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response.

    Parameters
    ----------
    app
        The application to wrap.
    secure
        The ``secure_cookies`` setting: HSTS is sent where :func:`is_secure` holds.
    """

    def __init__(self, app: ASGIApp, secure: bool | None) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_HEADERS)
        csp = REPORT_CSP if _is_report(scope["path"]) else CSP
        extra.append((b"content-security-policy", csp.encode()))
        if is_secure(HTTPConnection(scope), self.secure):
            extra.append((b"strict-transport-security", HSTS.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in extra if name not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
