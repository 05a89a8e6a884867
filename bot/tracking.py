"""Following applications after filing: pushed stage webhooks and polling.

A backend that can (the reference backend) calls ``POST /connectors/{kind}/events``,
signed with the shared secret over a fresh timestamp; a replayed or forged call is
refused, and each event id is taken once. Backends that cannot (Open311, REST) are polled
on a schedule with jitter, only for applications still open. Either way, a stage that
differs from the one stored produces exactly one notification (:mod:`bot.notify`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from bot.db.models import Application, BackendEvent, utcnow
from bot.notify import Notifier
from bot.settings import Settings
from service_connectors.base import ConnectorError, ServiceConnector, Stage
from service_connectors.webhook_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, is_authentic

logger = logging.getLogger(__name__)

FINAL_STAGES = frozenset({Stage.REJECTED, Stage.READY_FOR_COLLECTION, "returned"})


class StageEvent(BaseModel):
    event_id: str
    reference: str
    stage: Stage
    note: str | None = None


class StatusTracker:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        connectors: Mapping[str, ServiceConnector],
        notifier: Notifier,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.connectors = connectors
        self.notifier = notifier

    async def apply(self, session: AsyncSession, application: Application, stage: Stage) -> bool:
        """Record ``stage``; True (and the citizen told, once) if it is a change. The
        write names the stage it replaces, so of two replicas recording the same change
        (a push and a poll) one wins and one citizen message goes out."""
        if application.stage == stage.value:
            return False
        moved = await session.execute(
            update(Application)
            .where(
                Application.id == application.id,
                Application.stage == application.stage,
            )
            .values(stage=stage.value)
            .execution_options(synchronize_session=False)
        )
        if not getattr(moved, "rowcount", 0):
            return False
        set_committed_value(application, "stage", stage.value)
        await self.notifier.stage_changed(session, application)
        logger.info("application %s moved to %s", application.id, stage.value)
        return True

    async def poll_due(self, limit: int = 50) -> int:
        """Read the status of open applications of polled backends; how many changed."""
        kinds = [kind for kind, c in self.connectors.items() if not c.pushes_status]
        if not kinds:
            return 0
        interval = timedelta(seconds=self.settings.status_poll_interval_seconds)
        stale = utcnow() - interval
        async with self.sessions() as session:
            due = list(
                await session.scalars(
                    select(Application)
                    .where(
                        Application.connector.in_(kinds),
                        Application.backend_id.is_not(None),
                        Application.stage.not_in(FINAL_STAGES),
                        or_(Application.polled_at.is_(None), Application.polled_at < stale),
                    )
                    .limit(limit)
                )
            )
        changed = 0
        for application in due:
            changed += await self._poll(application.id, application.polled_at, interval)
        return changed

    async def _poll(self, application_id: str, seen: datetime | None, interval: timedelta) -> int:
        """Read one status, unless another replica polled it since ``seen``. The claim
        commits before the backend is asked: no transaction waits on a network call."""
        # Spread the next polls (jitter) so they do not come back all at once.
        stamp = utcnow() - interval * random.uniform(0, 0.2)  # noqa: S311 (not crypto)
        async with self.sessions() as session:
            claimed = await session.execute(
                update(Application)
                .where(
                    Application.id == application_id,
                    Application.polled_at.is_(None)
                    if seen is None
                    else Application.polled_at == seen,
                )
                .values(polled_at=stamp)
            )
            await session.commit()
            if not getattr(claimed, "rowcount", 0):
                return 0  # another replica polls it
            application = await session.get(Application, application_id)
        connector = self.connectors.get(application.connector) if application else None
        if application is None or connector is None or application.backend_id is None:
            return 0
        try:
            report = await connector.get_status(application.backend_id)
        except ConnectorError as exc:
            logger.info("status of %s not read: %s", application.id, exc)
            return 0
        async with self.sessions() as session:
            current = await session.get(Application, application_id)
            if current is None:
                return 0
            changed = await self.apply(session, current, report.stage)
            await session.commit()
        return int(changed)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/connectors/{kind}/events", status_code=204)
        async def stage_event(
            kind: str,
            request: Request,
            timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER)] = None,
            signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
        ) -> Response:
            secret = self.settings.backend_webhook_secret
            connector = self.connectors.get(kind)
            body = await request.body()
            if (
                secret is None
                or connector is None
                or not connector.pushes_status
                or not is_authentic(secret.get_secret_value(), timestamp, signature, body)
            ):
                logger.warning("refused a %s status webhook (signature or timestamp)", kind)
                raise HTTPException(403, "invalid signature")
            try:
                event = StageEvent.model_validate_json(body)
            except ValidationError as exc:
                raise HTTPException(422, "not a stage event") from exc
            await self._receive(kind, event)
            return Response(status_code=204)

        return router

    async def _receive(self, kind: str, event: StageEvent) -> None:
        async with self.sessions() as session:
            session.add(BackendEvent(source=kind, event_id=event.event_id))
            try:
                await session.flush()
            except IntegrityError:
                raise HTTPException(409, "event already received") from None
            # The event names the backend's own reference: our ``backend_id`` (the
            # citizen's reference is the gateway's, issue 24; older rows have both).
            application = await session.scalar(
                select(Application).where(
                    Application.connector == kind, Application.backend_id == event.reference
                )
            )
            if application is None:
                raise HTTPException(404, "unknown application")
            await self.apply(session, application, event.stage)
            await session.commit()
