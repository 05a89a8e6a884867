"""A Rasa stand-in on loopback that plays the status form as ``bot/data/rules.yml`` does,
calling the gateway's real action endpoint for every step.

It serves the two Rasa endpoints a gateway turn uses: ``POST /webhooks/rest/webhook`` and
``GET /status``. Its NLU is a rule: a payload (``/intent{"entity": …}``) is that intent;
a message whose first word is a STATUS word, or that says "status", is ``check_status``;
anything else is ``nlu_fallback``, answered "Sorry?" outside a form. So a channel test
sees what the gateway's handlers say to the citizen, without a trained model.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from channels.sms.keywords import STATUS_WORDS, fold
from support.stack import ACTION_TOKEN

FALLBACK = "Sorry?"
REQUIRED = ("reference", "verification_answer")


@dataclass
class _Tracker:
    slots: dict[str, Any] = field(default_factory=dict)
    active_loop: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[str, Any] = field(default_factory=dict)


def parse(text: str) -> dict[str, Any]:
    """The stand-in's NLU: the parse data of ``text``."""
    entities: list[dict[str, Any]] = []
    if text.startswith("/"):
        name, _, raw = text[1:].partition("{")
        values = json.loads("{" + raw) if raw else {}
        entities = [{"entity": key, "value": value} for key, value in values.items()]
        intent = name
    elif fold(text.split(maxsplit=1)[0] if text.split() else "") in STATUS_WORDS or (
        "status" in text.casefold()
    ):
        intent = "check_status"
    else:
        intent = "nlu_fallback"
    return {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": entities}


@dataclass
class RasaDouble:
    gateway_url: str = ""  # set once the gateway listens
    trackers: dict[str, _Tracker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/status")
        async def status() -> dict[str, Any]:
            return {"model_file": "models/double.tar.gz"}

        @app.post("/webhooks/rest/webhook")
        async def webhook(body: dict[str, Any]) -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=self.gateway_url, timeout=30) as client:
                return await self._turn(client, str(body["sender"]), str(body["message"]))

        return app

    async def _turn(
        self, client: httpx.AsyncClient, sender: str, text: str
    ) -> list[dict[str, Any]]:
        with self._lock:
            tracker = self.trackers.setdefault(sender, _Tracker())
        tracker.latest = parse(text)
        tracker.events.append({"event": "user", "text": text, "parse_data": tracker.latest})
        replies: list[dict[str, Any]] = []
        if tracker.active_loop is None:
            if tracker.latest["intent"]["name"] != "check_status":
                return [{"recipient_id": sender, "text": FALLBACK}]
            tracker.active_loop, tracker.slots = "status_form", {}
            replies += await self._run(client, sender, tracker, "validate_status_form", None)
        else:
            requested = tracker.slots.get("requested_slot")
            replies += await self._run(client, sender, tracker, "validate_status_form", requested)
        missing = next((slot for slot in REQUIRED if tracker.slots.get(slot) is None), None)
        if missing is not None:
            replies += await self._run(client, sender, tracker, f"action_ask_{missing}", missing)
            tracker.slots["requested_slot"] = missing
        else:
            tracker.active_loop = None
            tracker.slots["requested_slot"] = None
            replies += await self._run(client, sender, tracker, "action_check_status", None)
        return [{"recipient_id": sender, **reply} for reply in replies]

    async def _run(
        self,
        client: httpx.AsyncClient,
        sender: str,
        tracker: _Tracker,
        action: str,
        requested: str | None,
    ) -> list[dict[str, Any]]:
        body = {
            "next_action": action,
            "sender_id": sender,
            "version": "3.6.21",
            "domain": {},
            "tracker": {
                "sender_id": sender,
                "slots": {**tracker.slots, "requested_slot": requested},
                "latest_message": tracker.latest,
                "events": tracker.events,
                "active_loop": {"name": tracker.active_loop} if tracker.active_loop else {},
            },
        }
        response = await client.post(
            "/rasa/actions", json=body, headers={"Authorization": f"Bearer {ACTION_TOKEN}"}
        )
        response.raise_for_status()
        result = response.json()
        for event in result["events"]:
            if event["event"] == "slot":
                tracker.slots[event["name"]] = event["value"]
        return [
            {key: value for key, value in reply.items() if key in ("text", "buttons")}
            for reply in result["responses"]
        ]
