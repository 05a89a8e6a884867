"""Plays Rasa's side of the action protocol against a real gateway, for handler tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from support.db import query
from support.stack import ACTION_TOKEN


class ActionDriver:
    """Plays Rasa's side of the action protocol: keeps slots, applies returned events."""

    def __init__(self, gateway_url: str, directory: Path, sender: str) -> None:
        """``directory``: the test's ``tmp_path``, whose gateway database it reads."""
        self.url = gateway_url
        self.directory = directory
        httpx.post(f"{gateway_url}/channels/rest/webhook", json={"sender": sender, "message": "hi"})
        self.conversation_id = self.conversation_of(sender)
        self.slots: dict[str, Any] = {}
        self.active_loop: str | None = None
        self.events: list[dict[str, Any]] = []

    @classmethod
    def attach(cls, gateway_url: str, directory: Path, external_id: str) -> ActionDriver:
        """A driver for the conversation a channel (SMS, web chat...) already started for
        ``external_id`` (a phone number, a web-chat cookie)."""
        driver = cls.__new__(cls)
        driver.url, driver.directory = gateway_url, directory
        driver.conversation_id = driver.conversation_of(external_id)
        driver.slots, driver.active_loop, driver.events = {}, None, []
        return driver

    def conversation_of(self, sender: str) -> str:
        [(conversation_id,)] = query(
            self.directory,
            "SELECT c.id FROM conversations c JOIN channel_identities i ON i.id = c.identity_id"
            " WHERE i.external_id = :sender",
            sender=sender,
        )
        return str(conversation_id)

    def user(
        self, text: str, intent: str = "nlu_fallback", confidence: float = 0.9, **entities: str
    ) -> None:
        self.latest = {
            "text": text,
            "intent": {"name": intent, "confidence": confidence},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
        }
        self.events.append({"event": "user", "text": text, "parse_data": self.latest})

    def run(self, action: str, requested_slot: str | None = None) -> list[dict[str, Any]]:
        slots = {**self.slots, "requested_slot": requested_slot}
        body = {
            "next_action": action,
            "sender_id": self.conversation_id,
            "version": "3.6.21",
            "domain": {},
            "tracker": {
                "sender_id": self.conversation_id,
                "slots": slots,
                "latest_message": getattr(self, "latest", {}),
                "events": self.events,
                "active_loop": {"name": self.active_loop} if self.active_loop else {},
            },
        }
        response = httpx.post(
            f"{self.url}/rasa/actions",
            json=body,
            headers={"Authorization": f"Bearer {ACTION_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        result = response.json()
        for event in result["events"]:
            if event["event"] == "slot":
                self.slots[event["name"]] = event["value"]
            if event["event"] == "active_loop":
                self.active_loop = event["name"]
        self.last_events = result["events"]
        return list(result["responses"])

    def texts(self, action: str, requested_slot: str | None = None) -> str:
        return "\n".join(r["text"] for r in self.run(action, requested_slot))
