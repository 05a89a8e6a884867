"""The Twilio SMS channel: real gateway, real twilio client, a Twilio double on loopback.

Rasa is down in these tests on purpose: everything here (signatures, de-duplication,
keywords, flood control, retries, delivery reports) must work without the engine.
Conversations through the real engine are in tests/e2e/test_sms_conversation.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from support.db import query, settled
from support.servers import ThreadedServer, serve
from support.stack import gateway, gateway_settings
from support.twilio_double import SmsPhone, TwilioDouble, sign, twilio_settings

PUBLIC = "https://sms.example.org"
NUMBER = "+15145550100"


@pytest.fixture
def double() -> Iterator[tuple[TwilioDouble, ThreadedServer]]:
    twilio = TwilioDouble()
    with serve(twilio.app()) as server:
        yield twilio, server


def start_gateway(
    tmp_path: Path, double: tuple[TwilioDouble, ThreadedServer], **overrides: Any
) -> Any:
    values = {
        **twilio_settings(double[1].url, PUBLIC),
        "delivery_retry_base_seconds": 0.1,
        **overrides,
    }
    return gateway(gateway_settings(tmp_path, "http://127.0.0.1:9", **values))


@pytest.fixture
def server(tmp_path: Path, double: tuple[TwilioDouble, ThreadedServer]) -> Iterator[ThreadedServer]:
    with start_gateway(tmp_path, double) as running:
        yield running


@pytest.fixture
def phone(server: ThreadedServer, double: tuple[TwilioDouble, ThreadedServer]) -> SmsPhone:
    return SmsPhone(server.url, PUBLIC, NUMBER, double[0])


def post_signed(server: ThreadedServer, path: str, params: dict[str, str], signature: str | None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return httpx.post(server.url + path, content=urlencode(params), headers=headers)


INBOUND = {"MessageSid": "SMsig1", "From": NUMBER, "To": "+15005550006", "Body": "HELP"}


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        pytest.param(sign(PUBLIC + "/channels/sms/twilio", INBOUND), 200, id="valid"),
        pytest.param(sign(PUBLIC + "/channels/sms/twilio", INBOUND, "wrong-token"), 403,
                     id="wrong-token"),
        pytest.param(sign("http://127.0.0.1/channels/sms/twilio", INBOUND), 403,
                     id="signed-for-another-url"),
        pytest.param(sign(PUBLIC + "/channels/sms/twilio", {**INBOUND, "Body": "STOP"}), 403,
                     id="body-tampered"),
        pytest.param("", 403, id="empty"),
        pytest.param(None, 403, id="missing"),
    ],
)  # fmt: skip
def test_inbound_signature(
    server: ThreadedServer, tmp_path: Path, signature: str | None, expected: int
) -> None:
    response = post_signed(server, "/channels/sms/twilio", INBOUND, signature)
    assert response.status_code == expected
    stored = query(tmp_path, "SELECT count(*) FROM messages")[0][0]
    if expected == 200:
        assert response.text.startswith("<?xml") and "<Response></Response>" in response.text
        assert stored >= 1
    else:
        assert stored == 0


def test_a_duplicate_message_sid_is_processed_once_even_concurrently(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer], tmp_path: Path
) -> None:
    responses: list[int] = []

    def deliver_again() -> None:
        responses.append(phone.post("HELP", sid="SMdup").status_code)

    threads = [threading.Thread(target=deliver_again) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert responses == [200] * 5
    double[0].wait_for(NUMBER, 1)
    time.sleep(0.5)  # a second reply would have arrived by now
    assert len(double[0].bodies_to(NUMBER)) == 1
    assert query(tmp_path, "SELECT count(*) FROM messages WHERE direction='INBOUND'") == [(1,)]


STOP_WORDS = ["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "End", "QUIT", "ARRET",
              "Arrêt", "arrêt!", "СТОП", "стоп"]  # fmt: skip


@pytest.mark.parametrize("word", STOP_WORDS)
def test_opt_out_keywords(phone: SmsPhone, tmp_path: Path, word: str) -> None:
    assert "unsubscribed" in phone.text(word)
    assert query(tmp_path, "SELECT opted_in, trigger, channel FROM consent_changes") == [
        (0, query(tmp_path, "SELECT trigger FROM consent_changes")[0][0], "sms")
    ]
    assert query(tmp_path, "SELECT opted_out_at IS NOT NULL FROM channel_identities") == [(1,)]


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_opt_in_keywords_after_stop(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer], tmp_path: Path, word: str
) -> None:
    phone.text("STOP")
    assert phone.post("HELP").status_code == 200  # opted out: stored, not answered
    assert phone.post("STOP").status_code == 200  # confirmed once only
    assert "subscribed again" in phone.text(word)
    assert len(double[0].bodies_to(NUMBER)) == 2
    changes = query(tmp_path, "SELECT opted_in FROM consent_changes ORDER BY id")
    assert [row[0] for row in changes] == [
        0, 0, 1
    ]  # fmt: skip


@pytest.mark.parametrize("word", ["HELP", "help", "Info", "INFO."])
def test_help_says_who_we_are_how_to_reach_a_person_and_how_to_stop(
    phone: SmsPhone, word: str
) -> None:
    reply = phone.text(word)
    assert "City services" in reply and "311" in reply and "STOP" in reply
    assert "Reply 1 for Apply for a service" in reply


@pytest.mark.parametrize(
    ("body", "extra", "expected"),
    [
        pytest.param("", {}, "empty message", id="empty"),
        pytest.param("😀🙏", {}, "only read words", id="emoji-only"),
        pytest.param("x" * 10_000, {}, "too long", id="10kB"),
        pytest.param("", {"NumMedia": "1", "MediaUrl0": "https://x/y.jpg"}, "pictures",
                     id="media-only"),
    ],
)  # fmt: skip
def test_odd_messages_get_a_short_polite_reply(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer], body: str,
    extra: dict[str, str], expected: str,
) -> None:  # fmt: skip
    assert phone.post(body, **extra).status_code == 200
    assert expected in double[0].wait_for(NUMBER, 1)[0]


def test_messages_from_one_number_are_answered_in_order(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    for body in ("HELP", "STOP", "START"):
        assert phone.post(body).status_code == 200
    replies = double[0].wait_for(NUMBER, 3)
    assert "311" in replies[0] and "unsubscribed" in replies[1] and "again" in replies[2]


def test_a_flood_is_told_once_and_does_not_slow_others(
    tmp_path: Path, double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    with start_gateway(tmp_path, double, sms_rate_limit_messages=3) as running:
        flooder = SmsPhone(running.url, PUBLIC, "+15145550111", double[0])
        for _ in range(10):
            flooder.post("HELP")
        calm = SmsPhone(running.url, PUBLIC, "+15145550112", double[0])
        assert "311" in calm.text("HELP", timeout=10)
        time.sleep(1.0)
        replies = double[0].bodies_to(flooder.number)
    assert len(replies) == 4, replies
    assert "too fast" in replies[-1]


def test_long_replies_are_paged_with_more(
    tmp_path: Path, double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    with start_gateway(tmp_path, double, sms_segment_budget=1) as running:
        phone = SmsPhone(running.url, PUBLIC, NUMBER, double[0])
        first = phone.text("HELP")
        assert first.endswith("Reply MORE for the rest.") and len(first) <= 160
        pages = [first]
        while pages[-1].endswith("Reply MORE for the rest."):
            pages.append(phone.text("MORE"))
        assert "Reply 4 for Talk to a person" in pages[-1]
        assert "nothing more" in phone.text("more")


def test_unsubscribed_at_the_carrier_marks_the_citizen_opted_out(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer], tmp_path: Path
) -> None:
    double[0].unsubscribed.add(NUMBER)
    assert phone.post("HELP").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not query(tmp_path, "SELECT * FROM consent_changes"):
        time.sleep(0.05)
    assert query(tmp_path, "SELECT opted_in, trigger FROM consent_changes") == [(0, "error 21610")]
    sql = "SELECT status, error_code FROM deliveries"
    assert settled(tmp_path, sql, [("failed", "21610")]) == [("failed", "21610")]


def test_a_failed_send_is_retried_with_backoff(
    phone: SmsPhone, double: tuple[TwilioDouble, ThreadedServer], tmp_path: Path
) -> None:
    double[0].failures.extend([503, 500])
    assert "311" in phone.text("HELP", timeout=20)
    sql = "SELECT status, attempts FROM deliveries"
    assert settled(tmp_path, sql, [("accepted", 3)]) == [("accepted", 3)]


def status_callback(server: ThreadedServer, sid: str, status: str, code: str | None = None,
                    signed: bool = True) -> httpx.Response:  # fmt: skip
    params = {"MessageSid": sid, "MessageStatus": status, "To": NUMBER}
    if code:
        params["ErrorCode"] = code
    path = "/channels/sms/twilio/status"
    return post_signed(server, path, params, sign(PUBLIC + path, params) if signed else None)


def test_delivery_reports_are_recorded_and_never_go_backwards(
    phone: SmsPhone, server: ThreadedServer, double: tuple[TwilioDouble, ThreadedServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    phone.text("HELP")
    sid = double[0].sent[-1]["Sid"]
    assert double[0].sent[-1]["StatusCallback"] == PUBLIC + "/channels/sms/twilio/status"
    assert status_callback(server, sid, "delivered", signed=False).status_code == 403
    sql = "SELECT status FROM deliveries"
    assert settled(tmp_path, sql, [("accepted",)]) == [("accepted",)]
    assert status_callback(server, sid, "delivered").status_code == 204
    assert status_callback(server, sid, "sent").status_code == 204  # late, out of order
    assert query(tmp_path, "SELECT status FROM deliveries") == [("delivered",)]


def test_a_retriable_undelivered_report_sends_again(
    phone: SmsPhone, server: ThreadedServer, double: tuple[TwilioDouble, ThreadedServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    phone.text("HELP")
    sid = double[0].sent[-1]["Sid"]
    settled(tmp_path, "SELECT status FROM deliveries", [("accepted",)])
    assert status_callback(server, sid, "undelivered", "30008").status_code == 204
    bodies = double[0].wait_for(NUMBER, 2, timeout=10)
    assert bodies[0] == bodies[1]
    sql = "SELECT status, attempts FROM deliveries"
    assert settled(tmp_path, sql, [("accepted", 2)]) == [("accepted", 2)]
