"""The wire format of Rasa 3.6's action server protocol (what ``RemoteAction`` sends)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Tracker(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender_id: str
    slots: dict[str, Any] = Field(default_factory=dict)
    latest_message: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    active_loop: dict[str, Any] = Field(default_factory=dict)


class ActionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    next_action: str
    sender_id: str
    tracker: Tracker
    version: str | None = None


class NlgCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    response: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    tracker: Tracker
    channel: dict[str, Any] = Field(default_factory=dict)


def slot_set(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def active_loop(name: str | None) -> dict[str, Any]:
    return {"event": "active_loop", "name": name}


def followup(name: str) -> dict[str, Any]:
    return {"event": "followup", "name": name}
