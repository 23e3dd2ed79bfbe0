"""Durable evaluation on a Huey queue (SQLite storage in the data folder by default).

The queue only carries submission ids; the rules that make evaluation durable and exactly-once
live in :mod:`covseg.platform.services.evaluation`. The web server enqueues; ``covseg worker``
consumes, and on start and then every minute re-queues work whose worker died and removes the
scratch folders it left. Setting :attr:`Queue.stopping` makes running evaluations hand their
submissions back to the queue at once (``covseg worker`` sets it on SIGTERM or SIGINT).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from huey import Huey, SqliteHuey, crontab
from sqlalchemy.orm import Session, sessionmaker

from covseg.platform.config import Settings
from covseg.platform.db import make_engine, session_factory
from covseg.platform.services.evaluation import (
    evaluate_submission,
    remove_orphan_work,
    requeue_stale,
)

log = logging.getLogger("covseg.worker")


@dataclass
class Queue:
    """The evaluation queue of one platform instance."""

    huey: Huey
    settings: Settings
    factory: sessionmaker[Session]
    _evaluate: Any
    _recover: Any
    stopping: threading.Event = field(default_factory=threading.Event)

    def enqueue(self, submission_id: int) -> None:
        """Ask a worker to evaluate a submission (duplicates are harmless)."""
        self._evaluate(submission_id)

    def recover(self) -> list[int]:
        """Re-queue queued work that was never picked up and work whose worker died."""
        ids = requeue_stale(self.factory, self.settings.stale_after_s)
        for submission_id in ids:
            self.enqueue(submission_id)
        removed = remove_orphan_work(self.factory, self.settings)
        if removed:
            log.info("removed the scratch folders of dead evaluations: %s", removed)
        return ids

    def drain(self) -> int:
        """Run every queued task in this process until the queue is empty (``--burst``)."""
        done = 0
        while not self.stopping.is_set() and (task := self.huey.dequeue()) is not None:
            self.huey.execute(task)
            done += 1
        return done


def make_queue(settings: Settings, factory: sessionmaker[Session] | None = None) -> Queue:
    """The Huey instance of ``settings`` with the evaluation and recovery tasks registered."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    huey = SqliteHuey(
        name="covseg", filename=str(settings.huey_path), results=False, utc=True, timeout=30
    )
    db = factory or session_factory(make_engine(settings.url))

    @huey.task(name="evaluate")
    def evaluate(submission_id: int) -> None:
        if evaluate_submission(db, settings, submission_id, stop=queue.stopping):
            log.info("submission %s evaluated", submission_id)
        elif queue.stopping.is_set():  # handed back: the next worker takes it up
            queue.enqueue(submission_id)
            log.info("submission %s handed back to the queue", submission_id)

    @huey.periodic_task(crontab(minute="*"), name="recover")
    def recover() -> None:
        queue.recover()

    queue = Queue(huey, settings, db, evaluate, recover)
    return queue
