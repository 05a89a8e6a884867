"""Background work on two replicas at once, on one database: retries of applications the
backend could not take, and of SMS the provider refused. Leases let one replica do each
piece of work: every application reaches the department once, every SMS goes out once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_connectors.reference_backend import create_app as create_backend
from support.db import query, wait_until
from support.driver import ActionDriver
from support.servers import ThreadedServer, serve
from support.stack import BACKEND_API_KEY, OPERATOR_TOKEN, gateway_settings, gateways
from support.twilio_double import SmsPhone, TwilioDouble, twilio_settings
from tests.bot.test_application_actions import fill_birth_certificate
from tests.bot.test_no_application_lost import FlakyFront

CITIZENS = 6


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[FlakyFront, ThreadedServer]]:
    department = FlakyFront(
        create_backend(f"sqlite:///{tmp_path / 'backend.db'}", BACKEND_API_KEY, OPERATOR_TOKEN)
    )
    department.down = 1_000  # every filing refused until the test says
    with serve(department) as server:
        yield department, server


def test_two_replicas_retrying_file_each_application_once(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer]
) -> None:
    department, server = front
    settings = gateway_settings(
        tmp_path,
        server.url,
        submission_retry_base_seconds=0.05,
        connector_breaker_cooldown_seconds=0.2,
        worker_interval_seconds=0.05,
    )
    with gateways(settings, 2) as (first, _second):
        for n in range(CITIZENS):
            driver = ActionDriver(first.url, tmp_path, f"citizen-{n}")
            fill_birth_certificate(driver)
            assert "provisional reference" in driver.texts("action_submit_application")
        department.down = 0  # both replicas' retry rounds race for the six rows
        filed = "SELECT count(*) FROM applications WHERE reference IS NOT NULL"
        wait_until(lambda: query(tmp_path, filed) == [(CITIZENS,)], timeout=60)
    assert department.reached == CITIZENS
    told = query(tmp_path, "SELECT count(*) FROM messages WHERE text LIKE '%is now with%'")
    assert told == [(CITIZENS,)]  # each citizen told the final reference once


def test_two_replicas_retrying_refused_sms_send_each_once(
    tmp_path: Path, twilio: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double, double_server = twilio
    phones = [f"+1514555{n:04d}" for n in range(CITIZENS)]
    public = "https://sms.example.org"
    settings = gateway_settings(
        tmp_path,
        "http://127.0.0.1:9",
        **{**twilio_settings(double_server.url, public), "worker_interval_seconds": 0.05},
        delivery_retry_base_seconds=0.05,
    )
    with gateways(settings, 2) as (first, _second):
        double.failures.extend([500] * CITIZENS)  # every first send fails: the sweeps resend
        for phone in phones:
            assert SmsPhone(first.url, public, phone, double).post("HELP").status_code == 200
        sent = "SELECT count(*) FROM deliveries WHERE status = 'accepted'"
        wait_until(lambda: query(tmp_path, sent) == [(CITIZENS,)], timeout=60)
    assert Counter(message["To"] for message in double.sent) == dict.fromkeys(phones, 1)
    # each of the provider's answers was one attempt: six refusals, six sends
    assert query(tmp_path, "SELECT sum(attempts) FROM deliveries") == [(2 * CITIZENS,)]
