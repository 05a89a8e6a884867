"""Applications a person must look at (stage ``needs_attention``): back to the retries,
the alert when one waits too long, and their figures for ``GET /metrics``.

A backend refused the application, or never took it within the retry caps
(:mod:`bot.submissions`). Supervisors act on them in the console
(:mod:`bot.console.attention`). Every change here is a conditional UPDATE on
``stage = 'needs_attention'``: of two replicas (or two supervisors) acting at once, one
changes the row and the other is told it already changed. The figures and the alert read
the rows through the partial index ``ix_applications_needs_attention``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.actions.submission import NEEDS_ATTENTION, PENDING_SUBMISSION
from bot.db.leases import lock_application
from bot.db.models import Application, AuditEntry, as_utc, new_id, utcnow

logger = logging.getLogger(__name__)

ALERT_ACTION = "needs_attention_alert"  # the audit log's action (staff_id None: the system)
# Built once, each read through ix_applications_needs_attention (tests/bot/
# test_needs_attention_console.py checks the plans): the list, oldest first, and the
# ones waiting since before a cutoff.
OLDEST_FIRST = (
    select(Application)
    .where(Application.stage == NEEDS_ATTENTION)
    .order_by(Application.needs_attention_since, Application.id)
)
WAITING_SINCE_BEFORE = OLDEST_FIRST.where(Application.needs_attention_since < bindparam("cutoff"))


def rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def back_to_retries(
    session: AsyncSession,
    application_id: str,
    now: datetime,
    answers: dict[str, Any] | None = None,
    new_idempotency_key: bool = False,
) -> bool:
    """Send a needs-attention application back to the retry loop
    (:class:`bot.submissions.SubmissionRetries`): ``pending_submission``, due ``now``,
    the backend's last answer cleared and the caps counted afresh (attempts and first
    attempt), so that it gets a whole round of retries again. ``answers`` replaces the
    collected answers (already validated); ``new_idempotency_key`` files it as a new
    submission (only when the backend refused the old one: nothing was filed under its
    key). True if this call moved it; False if it was no longer needing attention
    (another supervisor or replica acted first). The caller commits."""
    values: dict[str, Any] = {
        "stage": PENDING_SUBMISSION,
        "next_attempt_at": now,
        "lease_until": None,
        "submit_attempts": 0,
        "first_attempt_at": None,
        "last_error_kind": None,
        "last_error_status": None,
        "last_error_excerpt": None,
        "same_error_count": 0,
        "needs_attention_since": None,
        "needs_attention_reason": None,
        "updated_at": now,
    }
    if answers is not None:
        values["answers"] = answers
    if new_idempotency_key:
        values["idempotency_key"] = new_id()
    result = await session.execute(
        update(Application)
        .where(Application.id == application_id, Application.stage == NEEDS_ATTENTION)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def hold(session: AsyncSession, application_id: str) -> bool:
    """Lock a needs-attention application for the rest of the transaction, so that a
    check-then-write on it (a handoff, an alert) happens once. False if it no longer
    needs attention."""
    return await lock_application(session, application_id, NEEDS_ATTENTION)


def waiting_since(application: Application) -> datetime:
    """Since when it needs attention (its last change, for a row without the time)."""
    return as_utc(application.needs_attention_since or application.updated_at)


class AttentionAlerts:
    """The background pass (every replica, every round): an ERROR log line and an audit
    entry once per application and stay in needs_attention, when it has waited longer
    than ``NEEDS_ATTENTION_ALERT_MINUTES``. The audit entry is the record: written
    under the row's lock after checking there is none, so two replicas alert once."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], alert_after: timedelta) -> None:
        self.sessions = sessions
        self.alert_after = alert_after

    async def run_due(self, now: datetime | None = None) -> int:
        """Alert for every application waiting too long not yet alerted; how many."""
        now = now or utcnow()
        cutoff = now - self.alert_after
        async with self.sessions() as session:  # reads only: no write transaction
            overdue = list(await session.scalars(WAITING_SINCE_BEFORE, {"cutoff": cutoff}))
            if not overdue:
                return 0
            alerted = await self._alerted(session, min(waiting_since(a) for a in overdue))
        alerts = 0
        for application in overdue:
            key = (application.id, waiting_since(application).isoformat())
            if key not in alerted and await self._alert(application.id, now):
                alerts += 1
        return alerts

    @staticmethod
    async def _alerted(session: AsyncSession, since: datetime) -> set[tuple[str, str]]:
        """The (application, waiting since) pairs already alerted (ix_audit_log_created)."""
        details = await session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == ALERT_ACTION, AuditEntry.created_at >= since
            )
        )
        return {
            (str(detail.get("application")), str(detail.get("since")))
            for detail in details
            if detail
        }

    async def _alert(self, application_id: str, now: datetime) -> bool:
        async with self.sessions() as session:
            if not await hold(session, application_id):  # handled meanwhile
                await session.rollback()
                return False
            application = await session.get(Application, application_id)
            assert application is not None
            since = waiting_since(application)
            if (application_id, since.isoformat()) in await self._alerted(session, since):
                await session.rollback()  # another replica alerted first
                return False
            session.add(
                AuditEntry(
                    staff_id=None,
                    action=ALERT_ACTION,
                    conversation_id=application.conversation_id,
                    detail={
                        "application": application.id,
                        "since": since.isoformat(),
                        "connector": application.connector,
                        "reason": application.needs_attention_reason,
                    },
                    created_at=now,
                )
            )
            await session.commit()
        minutes = int((now - since).total_seconds() // 60)
        logger.error(  # ids and names only: no answers, no reference, no citizen
            "application %s has needed attention for %d minutes (connector %s, reason %s)",
            application.id,
            minutes,
            application.connector,
            application.needs_attention_reason,
        )
        return True


NEEDS_ATTENTION_BY_CONNECTOR = (
    select(
        Application.connector,
        func.count(),
        func.min(Application.needs_attention_since),
    )
    .where(Application.stage == NEEDS_ATTENTION)
    .group_by(Application.connector)
)


@dataclass(frozen=True, slots=True)
class AttentionSnapshot:
    by_connector: dict[str, tuple[int, float]]  # connector → count, oldest age (s)


class AttentionFigures:
    """A collector like :class:`bot.backlog.Backlog`: :meth:`refresh` (awaited by the
    ``/metrics`` route) reads the shared database, so every replica reports the same
    values; known connectors are reported with 0 when nothing waits."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], connectors: Collection[str]
    ) -> None:
        self.sessions = sessions
        self.connectors = sorted(connectors)
        self.snapshot: AttentionSnapshot | None = None  # None: the last read failed

    async def refresh(self, now: datetime | None = None) -> None:
        now = now or utcnow()
        try:
            by_connector: dict[str, tuple[int, float]] = {}
            async with self.sessions() as session:
                rows = await session.execute(NEEDS_ATTENTION_BY_CONNECTOR)
                for connector, count, oldest in rows:
                    age = max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest else 0.0
                    by_connector[connector] = (int(count), age)
            self.snapshot = AttentionSnapshot(by_connector)
        except Exception:  # absent rather than stale (civicgate_database_up says why)
            logger.warning("metrics: could not read the needs-attention figures", exc_info=True)
            self.snapshot = None

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return []
        families = self._families()
        count, oldest = families
        for connector in sorted({*self.connectors, *snapshot.by_connector}):
            waiting, age = snapshot.by_connector.get(connector, (0, 0.0))
            count.add_metric([connector], waiting)
            oldest.add_metric([connector], age)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "civicgate_needs_attention_applications",
                "Applications a backend refused or never took within the retry caps,"
                " waiting for a supervisor (console: Needs attention).",
                labels=["connector"],
            ),
            GaugeMetricFamily(
                "civicgate_needs_attention_oldest_age_seconds",
                "How long the oldest of them has waited (0 when none waits); alert past"
                " NEEDS_ATTENTION_ALERT_MINUTES.",
                labels=["connector"],
            ),
        ]
