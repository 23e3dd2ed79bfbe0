"""Leaderboards (hidden ones answer 404 to everyone but organizers)."""

from __future__ import annotations

from fastapi import APIRouter

from covseg.platform.api.schemas import BoardEntryOut, BoardOut
from covseg.platform.deps import DB, OptionalUser
from covseg.platform.services import challenges, leaderboard

router = APIRouter(tags=["leaderboards"])


@router.get("/challenges/{slug}/phases/{phase}/leaderboard")
def get_leaderboard(slug: str, phase: str, db: DB, user: OptionalUser) -> BoardOut:
    """Each team's counted submission, best first, with mean and sd per metric per source."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    board = leaderboard.leaderboard(db, user, ph)
    return BoardOut(
        phase=ph.slug,
        public=ph.board_public,
        ranking_method=ph.ranking_method,
        metrics=board.metrics,
        sources=board.sources,
        entries=[BoardEntryOut.model_validate(e, from_attributes=True) for e in board.entries],
    )
