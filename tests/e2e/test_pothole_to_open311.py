"""A pothole reported by SMS reaches the city's Open311 endpoint (a GeoReport v2 double)
with its address and attributes; the city closing it reaches the citizen as one SMS,
found by the gateway's status polling."""

from __future__ import annotations

import re

import pytest

from bot.devstack import StackConfig
from support.open311_double import POTHOLE, Open311Double
from support.servers import ThreadedServer
from support.twilio_double import SmsPhone, TwilioDouble
from tests.e2e.conftest import PUBLIC_BASE_URL

pytestmark = pytest.mark.rasa
REFERENCE = re.compile(r"\b(PH-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")


def test_pothole_by_sms_to_open311_then_told_when_the_city_closes_it(
    stack: StackConfig,
    twilio_double: tuple[TwilioDouble, ThreadedServer],
    open311_double: tuple[Open311Double, ThreadedServer],
) -> None:
    city = open311_double[0]
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550188", twilio_double[0])
    assert "Where is the pothole" in phone.text("there is a pothole on my street")
    assert "How big" in phone.text("120 Bank St at Gladstone")
    assert "120 Bank St at Gladstone" in phone.text("2")
    done = phone.text("1")
    found = REFERENCE.search(done)
    assert found is not None, done  # the citizen keeps a reference they can type back

    [(request_id, request)] = list(city.requests.items())
    form = dict(request["form"])
    assert form["service_code"] == POTHOLE
    assert form["address_string"] == "120 Bank St at Gladstone"
    assert form["attribute[size]"] == "medium"

    sent = len(phone.twilio.bodies_to(phone.number))
    city.update(request_id, "closed", "Filled on Tuesday.")
    update = phone.twilio.wait_for(phone.number, sent + 1, timeout=30)[sent]
    assert update.startswith(f"Update: Pothole report {found.group(1)}:")
    status = phone.text(f"STATUS {found.group(1)}")
    assert found.group(1) in status
    assert len(phone.twilio.bodies_to(phone.number)) == sent + 2  # told once
