"""The FastAPI application: JSON API under ``/api``, server-rendered pages everywhere else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from covseg.platform.config import Settings
from covseg.platform.db import make_engine, session_factory, upgrade
from covseg.platform.services.errors import ServiceError
from covseg.platform.tasks import Queue, make_queue

#: Room for the multipart envelope around an upload of the maximum size.
_ENVELOPE = 1 << 20


def create_app(settings: Settings, queue: Queue | None = None) -> FastAPI:
    """Build the server of one platform instance (migrating its database first)."""
    from covseg.platform import api, web

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    upgrade(engine)
    factory = session_factory(engine)
    app = FastAPI(
        title="covseg challenge platform",
        summary="Run a segmentation challenge: accounts, teams, phases, submissions, boards.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.factory = factory
    app.state.queue = queue or make_queue(settings, factory)

    @app.middleware("http")
    async def refuse_oversize(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Refuse by the declared length before reading a byte of an oversize body.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_upload_bytes + _ENVELOPE:
            limit = settings.max_upload_bytes / 1e6
            return JSONResponse(
                {"detail": f"the upload is over the limit of {limit:.0f} MB"}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
        return web.error_page(request, exc)

    app.include_router(api.router)
    web.mount(app)
    return app
