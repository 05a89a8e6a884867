"""Twilio's retries, as two replicas behind a load balancer see them: every webhook
posted to each replica at the same moment. Shared by the replay tests and the bench."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import httpx

from support.db import query
from support.twilio_double import ACCOUNT_SID, FROM_NUMBER, sign

WEBHOOK = "/channels/sms/twilio"
# Everything answered: no inbound message left to process, no reply left to send.
WAITING = "SELECT count(*) FROM messages WHERE direction = 'INBOUND' AND processed_at IS NULL"
UNSENT = "SELECT count(*) FROM deliveries WHERE status = 'queued'"


def all_answered(directory: Path) -> bool:
    """Whether the gateway database of ``directory`` has nothing left to answer."""
    return query(directory, WAITING) == [(0,)] and query(directory, UNSENT) == [(0,)]


def inbound(sid: str, sender: str, body: str) -> dict[str, str]:
    """The form Twilio posts for one inbound SMS."""
    return {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "To": FROM_NUMBER,
            "Body": body, "NumMedia": "0"}  # fmt: skip


async def post_everywhere(
    replicas: Sequence[str],
    public_base_url: str,
    messages: Sequence[dict[str, str]],
    concurrency: int = 16,
) -> list[int]:
    """Each of ``messages`` signed once and posted to every replica at once (``concurrency``
    messages in flight); every HTTP status the replicas answered."""
    limit = asyncio.Semaphore(concurrency)

    async def everywhere(client: httpx.AsyncClient, params: dict[str, str]) -> list[int]:
        headers = {"X-Twilio-Signature": sign(public_base_url + WEBHOOK, params),
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        body = urlencode(params)
        async with limit:
            answers = await asyncio.gather(
                *(client.post(url + WEBHOOK, content=body, headers=headers) for url in replicas)
            )
        return [answer.status_code for answer in answers]

    async with httpx.AsyncClient(timeout=60) as client:
        statuses = await asyncio.gather(*(everywhere(client, params) for params in messages))
    return [status for pair in statuses for status in pair]
