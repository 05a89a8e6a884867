"""Two gateway replicas on one database, each given every Twilio webhook at the same
moment (a provider retry meeting the original on another replica): every message is
answered exactly once, and no webhook fails. On PostgreSQL this is where lock order
matters (see bot/conversation.py's STORE_NEW); Rasa's turn is in tests/e2e."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.db import query, wait_until
from support.replay import inbound, post_everywhere
from support.servers import ThreadedServer, serve
from support.stack import gateway, gateway_settings
from support.twilio_double import TwilioDouble, twilio_settings

PUBLIC = "https://sms.example.org"
MESSAGES = 400
PHONES = 40


@pytest.fixture
def twilio() -> tuple[TwilioDouble, ThreadedServer]:
    double = TwilioDouble()
    with serve(double.app()) as server:
        yield double, server


def test_each_webhook_posted_to_two_replicas_at_once_is_answered_exactly_once(
    tmp_path: Path, twilio: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double, double_server = twilio
    settings = gateway_settings(
        tmp_path,
        "http://127.0.0.1:9",
        **twilio_settings(double_server.url, PUBLIC),
        sms_rate_limit_messages=MESSAGES,  # the phones text fast on purpose
    )
    phones = [f"+1514555{n:04d}" for n in range(PHONES)]
    messages = [inbound(f"SMreplay{n:06d}", phones[n % PHONES], "HELP") for n in range(MESSAGES)]
    with ExitStack() as replicas:
        urls = [replicas.enter_context(gateway(settings)).url for _ in range(2)]
        statuses = asyncio.run(post_everywhere(urls, PUBLIC, messages))
        assert Counter(statuses) == {200: 2 * MESSAGES}  # no 5xx, none refused

        def all_answered() -> bool:
            waiting = query(
                tmp_path,
                "SELECT count(*) FROM messages WHERE direction = 'INBOUND'"
                " AND processed_at IS NULL",
            )
            unsent = query(tmp_path, "SELECT count(*) FROM deliveries WHERE status = 'queued'")
            return waiting == [(0,)] and unsent == [(0,)]

        wait_until(all_answered, timeout=120)
    stored = query(tmp_path, "SELECT count(*) FROM messages WHERE direction = 'INBOUND'")
    assert stored == [(MESSAGES,)]  # each MessageSid once
    per_phone = Counter(sent["To"] for sent in double.sent)
    assert per_phone == {phone: MESSAGES // PHONES for phone in phones}  # none lost, none twice
    deliveries = query(tmp_path, "SELECT status, count(*) FROM deliveries GROUP BY status")
    assert deliveries == [("accepted", MESSAGES)]
