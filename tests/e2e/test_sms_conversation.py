"""A whole application and a status query by SMS: signed Twilio webhooks into the real
gateway and Rasa, replies read at the Twilio double — digits and short words only."""

from __future__ import annotations

import re

import httpx
import pytest

from bot.devstack import StackConfig
from channels.sms.composer import count_segments
from support.db import query
from support.servers import ThreadedServer
from support.stack import backend_id
from support.twilio_double import SmsPhone, TwilioDouble
from tests.e2e.conftest import PUBLIC_BASE_URL

pytestmark = pytest.mark.rasa
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")


@pytest.fixture
def phone(stack: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer]) -> SmsPhone:
    return SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550123", twilio_double[0])


def test_birth_certificate_by_sms_with_digits_then_status(
    phone: SmsPhone, stack: StackConfig
) -> None:
    menu = phone.text("HELP")
    assert "STOP" in menu and "Reply 1 for Apply for a service" in menu
    services = phone.text("1")
    assert "Which service" in services and "Reply 1 for Birth certificate" in services
    assert "full name" in phone.text("1")
    assert "date of birth" in phone.text("Maria Lopez")
    assert "born" in phone.text("21/03/2019")
    assert "parent" in phone.text("Ottawa")
    summary = phone.text("Ana Lopez")
    assert "Maria Lopez" in summary and "Reply 1 for Yes, send it" in summary
    assert count_segments(summary).encoding == "GSM-7"
    done = phone.text("1")
    found = REFERENCE.search(done)
    assert found is not None, done
    reference = found.group(1)
    ours = "SELECT provisional_reference FROM applications WHERE reference = :r"
    assert query(stack.data_dir, ours, r=reference) == [(reference,)]  # ours, not the backend's
    theirs = backend_id(stack.data_dir, reference)
    assert theirs != reference

    assert "Received" in phone.text(f"status {reference}")
    sent = len(phone.twilio.bodies_to(phone.number))
    httpx.post(
        f"{stack.backend_url}/operator/applications/{theirs}/advance",
        json={},
        headers={"X-Operator-Token": stack.backend_operator_token},
    ).raise_for_status()
    # The backend pushes the change (signed webhook): the citizen is told once, by SMS.
    update = phone.twilio.wait_for(phone.number, sent + 1)[sent]
    assert update.startswith(f"Update: Birth certificate {reference}: In review.")
    assert count_segments(update).encoding == "GSM-7"
    assert "In review" in phone.text(f"STATUS {reference.lower()}")
    assert len(phone.twilio.bodies_to(phone.number)) == sent + 2  # no second update


def test_stop_then_nothing_until_start(
    stack: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double = twilio_double[0]
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550124", double)
    assert "unsubscribed" in phone.text("Stop")
    sent_before = len(double.bodies_to(phone.number))
    assert phone.post("hello").status_code == 200
    assert phone.post("STOP").status_code == 200  # no second confirmation
    assert "subscribed again" in phone.text("START")
    assert len(double.bodies_to(phone.number)) == sent_before + 1
