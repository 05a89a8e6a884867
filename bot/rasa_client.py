"""The gateway's only way to Rasa: its HTTP API and REST channel (a separate process)."""

from __future__ import annotations

from typing import Any

import httpx

from channels.base import Button, OutgoingMessage


class RasaUnavailable(Exception):  # noqa: N818 (named like the connectors' errors)
    """Rasa is down, slow or failing: the citizen gets an apology, nothing is lost."""


class RasaClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 20.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._params = {"token": token} if token else {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[OutgoingMessage]:
        """One user turn through Rasa's REST channel; the bot's replies in order."""
        body = {"sender": sender_id, "message": text, "metadata": metadata or {}}
        try:
            response = await self._client.post("/webhooks/rest/webhook", json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RasaUnavailable(type(exc).__name__) from exc
        return [_to_message(item) for item in response.json() if item.get("text")]

    async def append_events(self, sender_id: str, events: list[dict[str, Any]]) -> None:
        """Add events to a conversation's tracker (``--enable-api``): how the gateway
        ends an open form when a person closed the conversation."""
        try:
            response = await self._client.post(
                f"/conversations/{sender_id}/tracker/events",
                params={**self._params, "include_events": "NONE"},
                json=events,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RasaUnavailable(type(exc).__name__) from exc

    async def status(self) -> dict[str, Any]:
        """``GET /status``: which model is loaded. Raises :class:`RasaUnavailable`."""
        try:
            response = await self._client.get("/status", params=self._params, timeout=3.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RasaUnavailable(type(exc).__name__) from exc
        result: dict[str, Any] = response.json()
        return result


def _to_message(item: dict[str, Any]) -> OutgoingMessage:
    buttons = tuple(
        Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
        for b in item.get("buttons") or []
    )
    return OutgoingMessage(text=str(item["text"]), buttons=buttons)
