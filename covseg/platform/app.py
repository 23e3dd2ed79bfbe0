"""The FastAPI application: JSON API under ``/api``, server-rendered pages everywhere else."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from covseg.platform import security
from covseg.platform.config import Settings
from covseg.platform.db import make_engine, session_factory, upgrade
from covseg.platform.hardening import SecurityHeaders
from covseg.platform.services.errors import Invalid, ServiceError, TooManyAttempts
from covseg.platform.services.throttle import LoginThrottle
from covseg.platform.tasks import Queue, make_queue

#: Room for the multipart envelope around an upload of the maximum size.
_ENVELOPE = 1 << 20


def create_app(settings: Settings, queue: Queue | None = None) -> FastAPI:
    """Build the server of one platform instance (migrating its database first)."""
    from covseg.platform import api, web
    from covseg.platform.api.docs import mount_docs

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    upgrade(engine)
    factory = session_factory(engine)
    app = FastAPI(
        title="covseg challenge platform",
        summary="Run a segmentation challenge: accounts, teams, phases, submissions, boards.",
        docs_url=None,  # served by mount_docs, from the installed package (no CDN)
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # Counted as the body arrives (chunked uploads too): an oversize upload is cut off
        # before it fills the disk.
        max_body_size=settings.max_upload_bytes + _ENVELOPE,
    )
    app.state.settings = settings
    app.state.factory = factory
    app.state.queue = queue or make_queue(settings, factory)
    app.state.login_throttle = LoginThrottle(
        free_per_account=settings.login_free_failures,
        free_per_client=settings.login_free_failures_per_client,
        base_s=settings.login_backoff_s,
        max_s=settings.login_max_backoff_s,
    )
    security.set_hash_concurrency(settings.hash_concurrency)
    app.add_middleware(SecurityHeaders, secure=settings.secure_cookies)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if request.url.path.startswith("/api/"):
            response: Response = JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
        else:
            response = web.error_page(request, exc)
        if isinstance(exc, TooManyAttempts):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, exc: RequestValidationError) -> Response:
        """Pages show a bad form field (too long, missing) as one line; the API keeps 422."""
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        field = str(first.get("loc", ("", "the form"))[-1])
        message = f"{field}: {str(first.get('msg', 'invalid')).lower()}"
        return web.error_page(request, Invalid(message))

    app.include_router(api.router)
    mount_docs(app)
    web.mount(app)
    return app
