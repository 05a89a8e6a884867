"""Guessing another person's second factor (issue 18): the limits hold per application,
across identities, channels and replicas.

The identities are made by the real channels (a signed Twilio webhook, the web chat's
page and POST, the REST webhook); Rasa's part of the status form (which action runs
next) is played by :class:`support.driver.ActionDriver` against the real action endpoint,
as in tests/bot/test_application_actions.py. Delays are crossed on the gateway's clock
(``Runtime.clock``), never by sleeping.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.actions.status import Failures
from bot.db.models import utcnow
from bot.deps import Runtime
from support.db import query
from support.driver import ActionDriver
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings, gateways
from support.twilio_double import SmsPhone, TwilioDouble, twilio_settings

PUBLIC = "https://sms.example.org"
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")
RIGHT = "21/03/2019"
# A service, the answers its applicant gives, and the second factor among them.
Service = tuple[str, tuple[str, ...], str]
BIRTH_CERTIFICATE: Service = (
    "birth_certificate",
    ("Maria Lopez", RIGHT, "Ottawa", "Ana Lopez"),
    RIGHT,
)
POTHOLE: Service = ("pothole", ("120 Bank St", "2"), "120 bank st")  # case does not matter
QUESTION = (
    "To protect your privacy, please answer a question about this application."
    " What is the child's date of birth?"
)
LOCKED = (
    "For your security, this status is locked after too many wrong answers."
    " Please try again tomorrow, or call 311."
)
TOO_SOON = "For your security, please wait {} before answering again. That answer was not checked."
NO_MATCH = "That does not match. You can try {} more times."
NO_MATCH_ONE = "That does not match. You can try 1 more time."
WAIT = " Please wait {} before answering again."
TOO_SHORT = "That answer is too short. For example, 120 Bank St or Bank St at Gladstone Ave."
THE_REFERENCE = "That is the application's reference, not the answer: it was not counted."
NOT_A_DATE = (
    "I could not read that date. Please write the date as day/month/year, for example 21/03/2019."
)


class Clock:
    """The gateway's clock, moved by the test."""

    def __init__(self) -> None:
        self.start = self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = self.start + timedelta(seconds=seconds)


def runtime_of(server: ThreadedServer) -> Runtime:
    runtime: Runtime = server.server.config.app.state.runtime
    return runtime


@dataclass
class Channels:
    """Makes identities through the real channels of one gateway."""

    server: ThreadedServer
    directory: Path
    twilio: TwilioDouble
    made: dict[str, int] = field(default_factory=dict)

    def identity(self, channel: str) -> ActionDriver:
        n = self.made[channel] = self.made.get(channel, 0) + 1
        url = self.server.url
        if channel == "sms":
            number = f"+1514555{n:04d}"
            SmsPhone(url, PUBLIC, number, self.twilio).text("hello")  # Rasa is down: an apology
            return ActionDriver.attach(url, self.directory, number)
        if channel == "webchat":
            with httpx.Client(base_url=url) as browser:
                browser.get("/").raise_for_status()  # the page issues the signed cookie
                browser.post("/channels/webchat/messages", json={"message": "hello"})
                cookie = str(browser.cookies["civicgate_chat"])
            return ActionDriver.attach(url, self.directory, cookie)
        assert channel == "rest"
        return ActionDriver(url, self.directory, f"rest-guesser-{n}")


def file_application(driver: ActionDriver, service: Service) -> str:
    code, answers, _second_factor = service
    driver.user(f"i want {code}", "apply_service", service=code)
    driver.run("validate_application_form")
    driver.run("action_ask_field_answer", "field_answer")
    for text in answers:
        driver.user(text)
        driver.run("validate_application_form", "field_answer")
    assert driver.slots["field_answer"] == "complete"
    driver.user("1")
    driver.run("validate_application_form", "confirmation")
    found = REFERENCE.search(driver.texts("action_submit_application"))
    assert found is not None
    return found.group(1)


def ask_status(driver: ActionDriver, reference: str) -> Any:
    """ "status <reference>": the form's first step; the verification slot it leaves."""
    driver.active_loop = "status_form"
    driver.slots.update(reference=None, verification_answer=None)
    driver.user(f"status {reference}", "check_status", 0.95, reference=reference)
    assert driver.run("validate_status_form") == []
    assert driver.slots["reference"] == reference
    return driver.slots["verification_answer"]


def answer(driver: ActionDriver, text: str, intent: str = "nlu_fallback") -> tuple[str, Any]:
    """An answer to the verification question: what the gateway said, the slot it left."""
    driver.user(text, intent, 0.95)
    said = driver.texts("validate_status_form", "verification_answer")
    return said, driver.slots["verification_answer"]


def attempts(directory: Path) -> list[tuple[Any, ...]]:
    return query(
        directory,
        "SELECT count(*), count(DISTINCT identity_id) FROM verification_attempts"
        " WHERE succeeded = :no",
        no=False,
    )


def alerts(directory: Path) -> list[tuple[Any, ...]]:
    rows = query(directory, "SELECT staff_id, action, detail FROM audit_log ORDER BY id")
    return [
        (staff, action, json.loads(detail) if isinstance(detail, str) else detail)
        for staff, action, detail in rows
    ]


def counters(server: ThreadedServer) -> tuple[float, float]:
    """civicgate_verification_failures_total and _alerts_total of one replica."""
    text = httpx.get(f"{server.url}/metrics").text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return (
        values["civicgate_verification_failures_total"],
        values["civicgate_verification_alerts_total"],
    )


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: ThreadedServer,
    twilio: tuple[TwilioDouble, ThreadedServer],
) -> Iterator[Channels]:
    overrides = getattr(request, "param", {})
    settings = gateway_settings(
        tmp_path, backend.url, **twilio_settings(twilio[1].url, PUBLIC), **overrides
    )
    with gateway(settings) as server:
        yield Channels(server, tmp_path, twilio[0])


# The 11 guesses at one application, from 11 identities on three channels (no delay here:
# the delay has its own test). Each: the channel, the answer, what the gateway says to it,
# the slot it leaves, then the wrong answers counted and alerts raised so far.
ELEVEN = [
    ("sms", "01/03/2019", NO_MATCH.format(2), None, 1, 0),
    ("webchat", "02/03/2019", NO_MATCH.format(2), None, 2, 0),
    ("rest", "03/03/2019", NO_MATCH.format(2), None, 3, 0),
    ("sms", "04/03/2019", NO_MATCH.format(2), None, 4, 0),
    ("webchat", "05/03/2019", NO_MATCH.format(2), None, 5, 1),  # the alert: 5 today
    ("rest", "06/03/2019", NO_MATCH.format(2), None, 6, 1),
    ("sms", "07/03/2019", NO_MATCH.format(2), None, 7, 1),
    ("webchat", "08/03/2019", NO_MATCH.format(2), None, 8, 1),
    ("rest", "09/03/2019", NO_MATCH_ONE, None, 9, 1),
    ("sms", "10/03/2019", "", "locked", 10, 1),  # the 10th: the application is locked
    ("webchat", RIGHT, "", "locked", 10, 1),  # asked before the lock: the right date, unchecked
]


@pytest.mark.parametrize("stack", [{"verification_delay_seconds": 0}], indirect=True)
def test_eleven_identities_get_ten_checked_guesses_then_only_the_applicant_sees_it(
    stack: Channels, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.actions.status")
    applicant = ActionDriver(stack.server.url, stack.directory, "the-applicant")
    reference = file_application(applicant, BIRTH_CERTIFICATE)
    guessers = [stack.identity(channel) for channel, *_ in ELEVEN]
    for guesser in guessers[:-1]:
        assert ask_status(guesser, reference) is None
        assert guesser.texts("action_ask_verification_answer", "verification_answer") == QUESTION
    assert ask_status(guessers[-1], reference) is None  # the 11th is asked before the lock

    for guesser, (_channel, text, said, slot, counted, alerted) in zip(
        guessers, ELEVEN, strict=True
    ):
        assert answer(guesser, text) == (said, slot)
        assert attempts(stack.directory) == [(counted, counted)]
        assert counters(stack.server) == (counted, alerted)
        assert len(alerts(stack.directory)) == alerted
        if slot == "locked":
            assert guesser.texts("action_check_status") == LOCKED

    [(staff, action, detail)] = alerts(stack.directory)
    assert (staff, action, detail["failures"]) == (None, "verification_alert", 5)
    # A 12th identity is told at once, without being asked; the applicant still sees it.
    late = stack.identity("sms")
    assert ask_status(late, reference) == "locked"
    assert late.texts("action_check_status") == LOCKED
    assert ask_status(applicant, reference) == "applicant"
    assert applicant.texts("action_check_status").startswith(f"Birth certificate {reference}: ")
    assert query(stack.directory, "SELECT count(*) FROM verification_attempts") == [(10,)]
    # The log tells what happened, without the answers or the numbers.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged.count("wrong status verification") == 10
    assert logged.count("status verification alert") == 1
    assert "refused unchecked" in logged
    for text in [row[1] for row in ELEVEN] + [f"+1514555{n:04d}" for n in range(1, 6)]:
        assert text not in logged


# One identity on SMS (a), one on the web chat (b), on the gateway's clock: seconds after
# the start, who answers what, what they are told, the slot, wrong answers counted.
DELAYS = [
    (0, "a", "01/01/2019", NO_MATCH.format(2) + WAIT.format("30 seconds"), None, 1),
    (10, "b", RIGHT, TOO_SOON.format("20 seconds"), None, 1),
    (29.5, "a", "02/01/2019", TOO_SOON.format("1 second"), None, 1),
    (30, "b", "03/01/2019", NO_MATCH.format(2) + WAIT.format("1 minute"), None, 2),
    (60, "a", RIGHT, TOO_SOON.format("30 seconds"), None, 2),
    (89, "b", RIGHT, TOO_SOON.format("1 second"), None, 2),
    (90, "a", RIGHT, "", "verified", 2),
]  # fmt: skip


@pytest.mark.parametrize("stack", [{"verification_delay_seconds": 30}], indirect=True)
def test_after_a_wrong_answer_the_next_one_waits_whoever_sends_it(stack: Channels) -> None:
    clock = Clock()
    runtime_of(stack.server).clock = clock
    applicant = ActionDriver(stack.server.url, stack.directory, "the-applicant")
    reference = file_application(applicant, BIRTH_CERTIFICATE)
    who = {"a": stack.identity("sms"), "b": stack.identity("webchat")}
    for driver in who.values():
        assert ask_status(driver, reference) is None
    for seconds, name, text, said, slot, counted in DELAYS:
        clock.at(seconds)
        assert answer(who[name], text) == (said, slot), seconds
        assert attempts(stack.directory)[0][0] == counted
    assert who["a"].texts("action_check_status").startswith(f"Birth certificate {reference}: ")


@pytest.mark.parametrize(
    ("failures", "wait_seconds"),
    [(0, 0), (1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (40, 3600)],
)
def test_the_delay_doubles_per_wrong_answer_up_to_an_hour(
    failures: int, wait_seconds: float
) -> None:
    now = utcnow()
    assert Failures(failures, now).wait(30, now) == timedelta(seconds=wait_seconds)
    assert Failures(failures, now).wait(0, now) == timedelta(0)  # VERIFICATION_DELAY_SECONDS=0


# Answers that are not guesses, for a date (birth certificate) and a free-text location
# (pothole): the gateway's reply; none is checked or counted. {ref} is the reference.
NOT_GUESSES = [
    (BIRTH_CERTIFICATE, "{ref}", "nlu_fallback", THE_REFERENCE),
    (BIRTH_CERTIFICATE, "  {lower}  ", "nlu_fallback", THE_REFERENCE),
    (BIRTH_CERTIFICATE, "{spaced}", "nlu_fallback", THE_REFERENCE),
    (BIRTH_CERTIFICATE, "status {lower}", "check_status", THE_REFERENCE),
    (BIRTH_CERTIFICATE, "ok", "affirm", NOT_A_DATE),  # after a hand-back, say
    (BIRTH_CERTIFICATE, "thanks", "thank", NOT_A_DATE),
    (POTHOLE, "{lower}", "nlu_fallback", THE_REFERENCE),  # would pass as a location
    (POTHOLE, "okay", "affirm", ""),  # 4 letters: a location could be that long
    (POTHOLE, "thank you", "thank", ""),
    (POTHOLE, "ok", "affirm", TOO_SHORT),
]  # fmt: skip


@pytest.mark.parametrize(("service", "typed", "intent", "said"), NOT_GUESSES)
@pytest.mark.parametrize("stack", [{"verification_delay_seconds": 30}], indirect=True)
def test_what_is_not_a_guess_is_asked_again_without_a_strike(
    stack: Channels, service: Service, typed: str, intent: str, said: str
) -> None:
    applicant = ActionDriver(stack.server.url, stack.directory, "the-applicant")
    reference = file_application(applicant, service)
    stranger = stack.identity("sms")
    assert ask_status(stranger, reference) is None
    text = typed.format(
        ref=reference, lower=reference.lower(), spaced=reference.replace("-", " - ").lower()
    )
    assert answer(stranger, text, intent) == (said, None)
    assert query(stack.directory, "SELECT count(*) FROM verification_attempts") == [(0,)]
    # Nothing counted, no delay started: the right answer is checked at once.
    assert answer(stranger, service[2]) == ("", "verified")


def test_concurrent_guesses_on_two_replicas_never_pass_the_limit(
    tmp_path: Path, backend: ThreadedServer
) -> None:
    settings = gateway_settings(
        tmp_path,
        backend.url,
        max_verification_attempts_per_application=3,
        verification_alert_failures=2,
        verification_delay_seconds=0,
    )
    with gateways(settings, 2) as replicas:
        applicant = ActionDriver(replicas[0].url, tmp_path, "the-applicant")
        reference = file_application(applicant, BIRTH_CERTIFICATE)
        guessers = [ActionDriver(replicas[n % 2].url, tmp_path, f"guesser-{n}") for n in range(8)]
        for guesser in guessers:
            assert ask_status(guesser, reference) is None
        with ThreadPoolExecutor(len(guessers)) as pool:  # all at once, on both replicas
            told = list(pool.map(lambda guesser: answer(guesser, "01/01/2019"), guessers))
        failures, alerted = zip(*(counters(replica) for replica in replicas), strict=True)
    assert attempts(tmp_path) == [(3, 3)]
    assert sorted(told, key=str) == sorted(
        [(NO_MATCH.format(2), None), (NO_MATCH_ONE, None)] + [("", "locked")] * 6, key=str
    )
    assert [(staff, action) for staff, action, _detail in alerts(tmp_path)] == [
        (None, "verification_alert")
    ]
    assert (sum(failures), sum(alerted)) == (3, 1)
