"""The gateway's only way to Rasa: its HTTP API and REST channel (a separate process).

Every NLU turn is one request here, so the client is aiohttp: on this machine it spends
about a tenth of httpx's CPU per request (``docs/performance.md``).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from bot.metrics import DETACHED, GatewayMetrics
from channels.base import Button, OutgoingMessage


class RasaUnavailable(Exception):  # noqa: N818 (named like the connectors' errors)
    """Rasa is down, slow or failing: the citizen gets an apology, nothing is lost."""


class RasaClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 20.0,
        metrics: GatewayMetrics = DETACHED,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._answered = metrics.nlu_latency.labels("ok")
        self._unavailable = metrics.nlu_latency.labels("unavailable")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._params = {"token": token} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Made on first use, inside the event loop that will use it."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        within: float | None = None,
    ) -> Any:
        # Never None: aiohttp reads timeout=None as "no limit at all".
        limit = aiohttp.ClientTimeout(total=within) if within is not None else self._timeout
        url = self._base_url + path  # RASA_URL may carry a path (behind a proxy)
        try:
            async with self._client().request(
                method, url, json=body, params=params, timeout=limit
            ) as response:
                response.raise_for_status()
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RasaUnavailable(type(exc).__name__) from exc

    async def send(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[OutgoingMessage]:
        """One user turn through Rasa's REST channel; the bot's replies in order."""
        body = {"sender": sender_id, "message": text, "metadata": metadata or {}}
        started = time.perf_counter()
        try:
            replies = await self._call("POST", "/webhooks/rest/webhook", body)
        except RasaUnavailable:
            self._unavailable.observe(time.perf_counter() - started)
            raise
        self._answered.observe(time.perf_counter() - started)
        return [_to_message(item) for item in replies or [] if item.get("text")]

    async def append_events(self, sender_id: str, events: list[dict[str, Any]]) -> None:
        """Add events to a conversation's tracker (``--enable-api``): how the gateway
        ends an open form when a person closed the conversation."""
        params = {**self._params, "include_events": "NONE"}
        await self._call("POST", f"/conversations/{sender_id}/tracker/events", events, params)

    async def active_loop(self, sender_id: str) -> str | None:
        """The form a conversation is in (``--enable-api``), or None: read on rare
        occasions (a hand-back), not on every turn."""
        params = {**self._params, "include_events": "NONE"}
        tracker = await self._call(
            "GET", f"/conversations/{sender_id}/tracker", params=params, within=3
        )
        loop = (tracker or {}).get("active_loop") or {}
        return str(loop["name"]) if loop.get("name") else None

    async def resume_loop(self, sender_id: str) -> str | None:
        """Set the conversation's open form (if any) going again, and name it: a form
        interrupted by a request for a person would only ask its question again, so the
        citizen's answer to the question the gateway re-asked would be lost. Read only
        when a person hands the conversation back (not on every turn)."""
        form = await self.active_loop(sender_id)
        if form is not None:
            await self.append_events(sender_id, [{"event": "active_loop", "name": form}])
        return form

    async def status(self) -> dict[str, Any]:
        """``GET /status``: which model is loaded. Raises :class:`RasaUnavailable`."""
        result: dict[str, Any] = await self._call("GET", "/status", params=self._params, within=3)
        return result


def _to_message(item: dict[str, Any]) -> OutgoingMessage:
    buttons = tuple(
        Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
        for b in item.get("buttons") or []
    )
    return OutgoingMessage(text=str(item["text"]), buttons=buttons)
