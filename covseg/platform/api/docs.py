"""The interactive API docs (Swagger UI 5) served from the files ``fastapi-offline`` installs.

No CDN: the page works on a server without internet access, and the content security policy
can stay at ``'self'`` (the start-up script is a static file, not inline code).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/api/docs"
ASSETS_URL = "/api/docs/assets"
#: ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``favicon.png`` as the package ships them.
ASSETS = Path(fastapi_offline.__file__).parent / "static"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
"""


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at :data:`DOCS_URL` (create ``app`` with ``docs_url=None``)."""
    page = _PAGE.format(title=app.title, assets=ASSETS_URL, openapi=app.openapi_url)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page)
