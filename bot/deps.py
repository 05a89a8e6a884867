"""The application's shared runtime, reached by routes through ``Annotated`` dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db.models import utcnow
from bot.handoff import Handoffs
from bot.metrics import GatewayMetrics
from bot.nlg import Responses
from bot.outbox import Outbox
from bot.rasa_client import RasaClient
from bot.settings import Settings
from service_connectors.base import ServiceConnector
from service_connectors.catalogue import Catalogue


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    rasa: RasaClient
    catalogue: Catalogue
    connectors: dict[str, ServiceConnector]
    responses: Responses
    handoffs: Handoffs
    outbox: Outbox
    metrics: GatewayMetrics
    # The time the actions go by (second-factor delays): tests fix it instead of sleeping.
    clock: Callable[[], datetime] = utcnow
    # Set at shutdown: long-lived streams (the console's live updates) end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
