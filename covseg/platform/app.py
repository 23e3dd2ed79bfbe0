"""The FastAPI application: JSON API under ``/api``, server-rendered pages everywhere else."""

from __future__ import annotations

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
        # Counted as the body arrives (chunked uploads too): an oversize upload is cut off
        # before it fills the disk.
        max_body_size=settings.max_upload_bytes + _ENVELOPE,
    )
    app.state.settings = settings
    app.state.factory = factory
    app.state.queue = queue or make_queue(settings, factory)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
        return web.error_page(request, exc)

    app.include_router(api.router)
    web.mount(app)
    return app
