"""What an action handler gets: the tracker, the database, the catalogue, the citizen's
language, and a place to put the events and replies it sends back to Rasa."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.protocol import ActionCall, slot_set
from bot.db.models import ApplicationDraft, Citizen, Conversation, utcnow
from bot.handoff import Handoffs
from bot.i18n import Localizer
from bot.metrics import DETACHED, GatewayMetrics
from bot.settings import Settings
from channels.base import Button
from service_connectors.base import ServiceConnector
from service_connectors.catalogue import Catalogue, Service


@dataclass
class ActionContext:
    call: ActionCall
    session: AsyncSession
    conversation: Conversation
    citizen: Citizen
    words: Localizer
    catalogue: Catalogue
    connectors: Mapping[str, ServiceConnector]
    settings: Settings
    today: date
    handoffs: Handoffs
    metrics: GatewayMetrics = DETACHED
    clock: Callable[[], datetime] = utcnow
    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)

    # --- reading the tracker --------------------------------------------------------
    @property
    def text(self) -> str:
        return str(self.call.tracker.latest_message.get("text") or "").strip()

    @property
    def intent(self) -> str | None:
        intent = self.call.tracker.latest_message.get("intent") or {}
        name = intent.get("name")
        return str(name) if name else None

    @property
    def intent_confidence(self) -> float:
        intent = self.call.tracker.latest_message.get("intent") or {}
        return float(intent.get("confidence") or 0.0)

    def entities(self, name: str) -> list[str]:
        return [
            str(entity["value"])
            for entity in self.call.tracker.latest_message.get("entities") or []
            if entity.get("entity") == name and entity.get("value") is not None
        ]

    def slot(self, name: str) -> Any:
        return self.call.tracker.slots.get(name)

    @property
    def requested_slot(self) -> str | None:
        value = self.call.tracker.slots.get("requested_slot")
        return str(value) if value else None

    def service(self, code: str | None) -> Service | None:
        return self.catalogue.get(code)

    # --- answering ------------------------------------------------------------------
    def _(self, message: str, **values: Any) -> str:
        """Translate ``message`` into the citizen's language and fill in ``values``."""
        text = self.words.gettext(message)
        return text.format(**values) if values else text

    def say(self, text: str, buttons: Sequence[Button] = ()) -> None:
        response: dict[str, Any] = {"text": text}
        if buttons:
            response["buttons"] = [{"title": b.title, "payload": b.payload} for b in buttons]
        self.responses.append(response)

    def set_slot(self, name: str, value: Any) -> None:
        self.events.append(slot_set(name, value))

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


# Built once: most actions of the application form load the draft.
DRAFT_OF = select(ApplicationDraft).where(
    ApplicationDraft.conversation_id == bindparam("conversation_id")
)


async def load_draft(ctx: ActionContext) -> ApplicationDraft | None:
    """The conversation's application in progress, if any."""
    return await ctx.session.scalar(DRAFT_OF, {"conversation_id": ctx.conversation.id})
