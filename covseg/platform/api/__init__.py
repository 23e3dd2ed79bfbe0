"""The JSON API: one router per resource, all under ``/api`` (OpenAPI docs at ``/api/docs``)."""

from fastapi import APIRouter

from covseg.platform.api import admin, auth, challenges, leaderboards, submissions

router = APIRouter(prefix="/api")
for module in (auth, challenges, submissions, leaderboards, admin):
    router.include_router(module.router)
