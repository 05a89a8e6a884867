"""The wire format of Rasa 3.6's action server protocol (what ``RemoteAction`` sends).

Every action and NLG call carries the conversation's whole event history (tens of kB
after a few turns). Only what the handlers read is modelled, and the body is parsed
straight from JSON (:func:`parsed_body`), so the rest is skipped, not built as dicts;
the events themselves are read only by the handlers that ask (:attr:`ActionCall.events`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from fastapi import HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        return cls.model_validate_json(body)


class Intent(_Read):
    name: str | None = None


class ParseData(_Read):
    intent: Intent | None = None


class Event(_Read):
    """A tracker event, as far as the handlers look: its type, a message's intent, an
    action's name and whether a ``loop_interrupted`` event resumes a form after a rule."""

    event: str = ""
    parse_data: ParseData | None = None
    name: str | None = None
    is_interrupted: bool = False

    @property
    def intent(self) -> str | None:
        return self.parse_data.intent.name if self.parse_data and self.parse_data.intent else None


class Tracker(_Read):
    sender_id: str
    slots: dict[str, Any] = Field(default_factory=dict)
    latest_message: dict[str, Any] = Field(default_factory=dict)
    active_loop: dict[str, Any] = Field(default_factory=dict)


class _EventsOnly(_Read):
    class _Tracker(_Read):
        events: list[Event] = Field(default_factory=list)

    tracker: _Tracker


class ActionCall(_Read):
    next_action: str
    sender_id: str
    tracker: Tracker
    version: str | None = None
    _body: bytes = PrivateAttr(default=b"")
    _events: list[Event] | None = PrivateAttr(default=None)

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        call = super().from_body(body)
        call._body = body  # kept for its events, parsed if asked
        return call

    @property
    def events(self) -> list[Event]:
        """The tracker's events, oldest first, read from the body on first use."""
        if self._events is None:
            found = _EventsOnly.model_validate_json(self._body) if self._body else None
            self._events = found.tracker.events if found else []
        return self._events


class NlgCall(_Read):
    response: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    tracker: Tracker
    channel: dict[str, Any] = Field(default_factory=dict)


Call = TypeVar("Call", bound=_Read)


def parsed_body(model: type[Call]) -> Callable[[Request], Awaitable[Call]]:
    """A dependency that validates the request body as ``model`` in one pass from JSON
    (422 with pydantic's errors, as FastAPI answers a body it cannot read)."""

    async def parse(request: Request) -> Call:
        try:
            return model.from_body(await request.body())
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_context=False, include_input=False)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from exc

    return parse


def slot_set(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def active_loop(name: str | None) -> dict[str, Any]:
    return {"event": "active_loop", "name": name}


def followup(name: str) -> dict[str, Any]:
    return {"event": "followup", "name": name}
