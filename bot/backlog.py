"""What waits in the shared database, read at each scrape of ``GET /metrics``.

Several replicas share one database, so a per-process tally of the outbox, the filings
or the handoff queue would be wrong on every replica: these figures are read from the
tables when Prometheus scrapes (one grouped query per table, on its index where it has
one), and every replica reports the same true values. Known channels, connectors and
teams are reported with 0 when nothing waits, so their series never vanish.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.actions.submission import NEEDS_ATTENTION, PENDING_SUBMISSION, SUBMITTING
from bot.db.models import (
    Application,
    Delivery,
    DeliveryStatus,
    Handoff,
    HandoffKind,
    HandoffStatus,
    as_utc,
    utcnow,
)
from bot.submissions import RETURNED

logger = logging.getLogger(__name__)

STATES = (PENDING_SUBMISSION, NEEDS_ATTENTION)  # civicgate_applications_by_state

# Built once. Queued rows only (ix_deliveries_due leads with the status).
OUTBOX = (
    select(
        Delivery.channel,
        func.count(),
        func.sum(case((Delivery.next_attempt_at <= bindparam("now"), 1), else_=0)),
        func.sum(case((Delivery.attempts > 0, 1), else_=0)),
    )
    .where(Delivery.status == DeliveryStatus.QUEUED)
    .group_by(Delivery.channel)
)
SUBMISSIONS = (
    select(Application.connector, Application.stage, func.count())
    .where(Application.stage.in_((SUBMITTING, PENDING_SUBMISSION, RETURNED, NEEDS_ATTENTION)))
    .group_by(Application.connector, Application.stage)
)
# ix_handoffs_status_team.
HANDOFF_QUEUE = (
    select(Handoff.team, Handoff.kind, func.count(), func.min(Handoff.queued_at))
    .where(Handoff.status == HandoffStatus.QUEUED)
    .group_by(Handoff.team, Handoff.kind)
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    outbox: dict[str, tuple[int, int, int]]  # channel → queued, due, retrying
    pending: dict[str, int]  # connector → applications not yet accepted
    refused: dict[str, int]  # connector → applications returned after a refusal
    states: dict[tuple[str, str], int]  # connector, stage → applications (STATES)
    queue: dict[tuple[str, str], tuple[int, float]]  # team, kind → length, oldest wait (s)


class Backlog:
    """A collector: :meth:`refresh` (awaited by the ``/metrics`` route) reads the
    database, :meth:`collect` (the registry, synchronously) reports what it read."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Collection[str],
        connectors: Collection[str],
        teams: Collection[str],
    ) -> None:
        self.sessions = sessions
        self.channels = sorted(channels)
        self.connectors = sorted(connectors)
        self.teams = sorted(teams)
        self.snapshot: Snapshot | None = None  # None: the last read failed

    async def refresh(self) -> None:
        try:
            self.snapshot = await self._read(utcnow())
        except Exception:  # reported as civicgate_database_up 0; stale figures would lie
            logger.warning("metrics: could not read the database", exc_info=True)
            self.snapshot = None

    async def _read(self, now: datetime) -> Snapshot:
        outbox: dict[str, tuple[int, int, int]] = {}
        pending: dict[str, int] = {}
        refused: dict[str, int] = {}
        states: dict[tuple[str, str], int] = {}
        queue: dict[tuple[str, str], tuple[int, float]] = {}
        async with self.sessions() as session:
            for channel, queued, due, retrying in await session.execute(OUTBOX, {"now": now}):
                outbox[channel] = (int(queued), int(due or 0), int(retrying or 0))
            for connector, stage, count in await session.execute(SUBMISSIONS):
                if stage in STATES:
                    states[(connector, stage)] = int(count)
                if stage == NEEDS_ATTENTION:
                    continue
                tally = refused if stage == RETURNED else pending
                tally[connector] = tally.get(connector, 0) + int(count)
            for team, kind, count, oldest in await session.execute(HANDOFF_QUEUE):
                wait = max(0.0, (now - as_utc(oldest)).total_seconds())
                queue[(team, kind)] = (int(count), wait)
        return Snapshot(outbox, pending, refused, states, queue)

    def describe(self) -> Iterable[Metric]:
        return [*self._families(), self._up(0.0)]

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return [self._up(0.0)]
        families = self._families()
        queued, due, retrying, pending, refused, by_state, length, wait = families
        for channel in sorted({*self.channels, *snapshot.outbox}):
            counts = snapshot.outbox.get(channel, (0, 0, 0))
            for family, value in zip((queued, due, retrying), counts, strict=True):
                family.add_metric([channel], value)
        for connector in sorted({*self.connectors, *snapshot.pending, *snapshot.refused}):
            pending.add_metric([connector], snapshot.pending.get(connector, 0))
            refused.add_metric([connector], snapshot.refused.get(connector, 0))
        for connector in sorted({*self.connectors, *(c for c, _ in snapshot.states)}):
            for state in STATES:
                by_state.add_metric([connector, state], snapshot.states.get((connector, state), 0))
        kinds = [kind.value for kind in HandoffKind]
        known = {(team, kind) for team in self.teams for kind in kinds}
        for team, kind in sorted(known | snapshot.queue.keys()):
            count, oldest = snapshot.queue.get((team, kind), (0, 0.0))
            length.add_metric([team, kind], count)
            wait.add_metric([team, kind], oldest)
        return [*families, self._up(1.0)]

    @staticmethod
    def _up(value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "civicgate_database_up",
            "1 if this scrape read the database (the backlog figures are then present).",
            value=value,
        )

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        def gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=list(labels))

        return [
            gauge(
                "civicgate_outbox_queued",
                "Outbox rows waiting to be sent (now, later or for a retry).",
                "channel",
            ),
            gauge(
                "civicgate_outbox_due",
                "Outbox rows waiting whose time has come (a growing number: the senders"
                " do not keep up, or the provider is down).",
                "channel",
            ),
            gauge(
                "civicgate_outbox_retrying",
                "Outbox rows waiting after a failed attempt.",
                "channel",
            ),
            gauge(
                "civicgate_submissions_pending",
                "Applications the backend has not accepted yet (to be filed again).",
                "connector",
            ),
            gauge(
                "civicgate_submissions_refused",
                "Applications the backend refused after the citizen had left the form.",
                "connector",
            ),
            gauge(
                "civicgate_applications_by_state",
                "Applications not with their backend, by connector and state:"
                " pending_submission (to be filed again) or needs_attention (the backend"
                " refused it or never took it within the caps: a person must look).",
                "connector",
                "state",
            ),
            gauge(
                "civicgate_handoff_queue_length",
                "Handoffs waiting for an agent, by team and kind (chat, message, callback).",
                "team",
                "kind",
            ),
            gauge(
                "civicgate_handoff_oldest_wait_seconds",
                "How long the oldest waiting handoff has waited (0 when none waits).",
                "team",
                "kind",
            ),
        ]
