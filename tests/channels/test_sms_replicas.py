"""Two gateway replicas on one database, each given every Twilio webhook at the same
moment (a provider retry meeting the original on another replica): every message is
answered exactly once, and no webhook fails. On PostgreSQL this is where lock order
matters (see bot/conversation.py's STORE_NEW); Rasa's turn is in tests/e2e."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from support.db import query, wait_until
from support.replay import all_answered, inbound, post_everywhere
from support.servers import ThreadedServer
from support.stack import gateway_settings, gateways
from support.twilio_double import TwilioDouble, twilio_settings

PUBLIC = "https://sms.example.org"
MESSAGES = 400
PHONES = 40


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
    with gateways(settings, 2) as replicas:
        urls = [replica.url for replica in replicas]
        statuses = asyncio.run(post_everywhere(urls, PUBLIC, messages))
        assert Counter(statuses) == {200: 2 * MESSAGES}  # no 5xx, none refused

        wait_until(lambda: all_answered(tmp_path), timeout=120)
    stored = query(tmp_path, "SELECT count(*) FROM messages WHERE direction = 'INBOUND'")
    assert stored == [(MESSAGES,)]  # each MessageSid once
    per_phone = Counter(sent["To"] for sent in double.sent)
    assert per_phone == {phone: MESSAGES // PHONES for phone in phones}  # none lost, none twice
    deliveries = query(tmp_path, "SELECT status, count(*) FROM deliveries GROUP BY status")
    assert deliveries == [("accepted", MESSAGES)]
