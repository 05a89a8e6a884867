"""Applications the backend could not take yet: retried until accepted, exactly once.

An application is committed (with its idempotency key) before the first backend call
(:mod:`bot.actions.submission`). When that call fails transiently, the row waits here as
``pending_submission``; a row left in ``submitting`` by a crash is picked up too. Each
failure is classified as at filing (:func:`bot.actions.submission.record_failure`): a
refusal, the same server error K times, or the connector's caps (attempts, hours) move it
to ``needs_attention`` and the citizen is told a person will check it. Each
retry sends the same idempotency key, so a backend that did receive an earlier attempt
answers with the same application instead of filing a second one. A short lease per row
keeps two replicas from submitting it at the same time; the connector's circuit breaker
keeps a dead backend from being hammered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.actions.submission import (
    PENDING_SUBMISSION,
    SUBMITTING,
    Caps,
    asked_field,
    citizen_reference,
    log_failure,
    record_failure,
    submission_of,
)
from bot.db.leases import claim, lease_free
from bot.db.models import Application, utcnow
from bot.metrics import DETACHED, GatewayMetrics
from bot.notify import Notifier
from service_connectors.base import (
    ConnectorError,
    Receipt,
    ServiceConnector,
    SubmissionRejected,
)
from service_connectors.catalogue import Catalogue

logger = logging.getLogger(__name__)

RETURNED = "returned"  # the backend refused a field after the citizen had left the form
LEASE = timedelta(seconds=60)
# A row still "submitting" after this long lost its process (a crash mid-call).
ABANDONED_AFTER = timedelta(minutes=2)


class SubmissionRetries:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        connectors: Mapping[str, ServiceConnector],
        catalogue: Catalogue,
        notifier: Notifier,
        retry_base_seconds: float,
        metrics: GatewayMetrics = DETACHED,
    ) -> None:
        self.sessions = sessions
        self.connectors = connectors
        self.catalogue = catalogue
        self.notifier = notifier
        self.retry_base_seconds = retry_base_seconds
        self.metrics = metrics

    async def run_due(self, limit: int = 20) -> int:
        """Try the applications whose retry is due; how many the backend accepted."""
        now = utcnow()
        due = or_(
            and_(
                Application.stage == PENDING_SUBMISSION,
                or_(Application.next_attempt_at.is_(None), Application.next_attempt_at <= now),
            ),
            and_(Application.stage == SUBMITTING, Application.updated_at < now - ABANDONED_AFTER),
        )
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Application.id, Application.connector)
                    .where(due, lease_free(Application, now))
                    .order_by(Application.created_at)
                    .limit(limit)
                )
            ).all()
        accepted = 0
        for application_id, kind in rows:
            connector = self.connectors.get(kind)
            if connector is not None and connector.breaker.is_open:
                continue  # the backend is resting: no attempt spent, tried when it reopens
            if await claim(self.sessions, Application, application_id, LEASE):
                accepted += await self._retry(application_id)
        return accepted

    async def _retry(self, application_id: str) -> int:
        """One attempt on a row whose lease we hold. The backend is called between two
        transactions: none stays open across the network call."""
        async with self.sessions() as session:
            filed = await session.get(Application, application_id)
        if filed is None or filed.stage not in (PENDING_SUBMISSION, SUBMITTING):
            return 0
        connector = self.connectors.get(filed.connector)
        outcome: Receipt | ConnectorError
        try:
            if connector is None:
                raise ConnectorError(f"connector {filed.connector} is not configured")
            outcome = await connector.submit(submission_of(filed))
        except ConnectorError as exc:  # SubmissionRejected included
            outcome = exc
        caps = Caps.of(connector.config if connector is not None else None)
        async with self.sessions() as session:
            application = await session.get(Application, application_id)
            assert application is not None  # rows are never deleted under a lease
            application.submit_attempts += 1
            application.lease_until = None
            result = await self._record(session, application, outcome, caps)
            await session.commit()
        self.metrics.submission_attempts.labels(filed.connector, result).inc()
        return int(result == "accepted")

    async def _record(
        self,
        session: AsyncSession,
        application: Application,
        outcome: Receipt | ConnectorError,
        caps: Caps,
    ) -> str:
        """Apply one attempt's outcome; accepted, refused (returned), needs_attention or
        failed (tried again later)."""
        if isinstance(outcome, SubmissionRejected) and (
            asked_field(self.catalogue.get(application.service_code), outcome) is not None
        ):
            await self._refused(session, application, outcome)
            return "refused"
        if isinstance(outcome, ConnectorError):
            reason = record_failure(application, outcome, caps, self.retry_base_seconds)
            log_failure(application, reason, self.metrics)
            if reason is None:
                return "failed"
            await self.notifier.needs_attention(session, application)
            return "needs_attention"
        application.reference = citizen_reference(application)
        application.backend_id = outcome.backend_id
        application.stage = outcome.stage.value
        application.next_attempt_at = None
        await self.notifier.filed_later(session, application)
        logger.info(
            "application %s accepted after %d attempts", application.id, application.submit_attempts
        )
        return "accepted"

    async def _refused(
        self, session: AsyncSession, application: Application, rejection: SubmissionRejected
    ) -> None:
        application.stage = RETURNED
        application.next_attempt_at = None
        application.last_error_kind = "refused"
        application.last_error_status = rejection.status
        application.last_error_excerpt = rejection.excerpt
        service = self.catalogue.get(application.service_code)
        names = {f.name: f.label for f in service.fields} if service else {}
        label = next((names[n] for n in rejection.field_errors if n in names), None)
        logger.warning(
            "application %s returned: the backend refused an answer (HTTP %s: %s)",
            application.id,
            rejection.status,
            rejection.excerpt,
        )
        await self.notifier.refused_later(session, application, label)
