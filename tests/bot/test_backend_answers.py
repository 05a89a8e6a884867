"""Issue 24: every answer of a city's Open311 server, classified end to end. A real
gateway (the filing action, the background retries, the notifier) files a pothole with
the GeoReport double scripted to answer as real servers do; each row of the table is
one backend behaviour → the application's stage, attempts, ``last_error_*`` and the exact
words the citizen is told, at filing and afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.actions.status import describe_stage
from bot.db.models import Application
from bot.i18n import localizer
from service_connectors.catalogue import load_catalogue
from support.db import query, wait_until
from support.driver import ActionDriver
from support.open311_double import API_KEY, POTHOLE, Answer, Open311Double
from support.servers import ThreadedServer, free_port, serve
from support.stack import gateway, gateway_settings
from tests.bot.test_metrics import scrape

ADDRESS = "120 Bank St at Gladstone"
# What a Django server answers when its view reads ``address`` (DEBUG on: it echoes the
# posted form, the citizen's address included).
DJANGO_500 = (
    "<!DOCTYPE html><html lang='en'><head><title>KeyError at /requests.json</title>"
    "<style>body { font: small sans-serif; }</style></head><body>\n"
    "<div id='summary'><h1>KeyError at /requests.json</h1>\n<pre class='exception_value'>"
    "&#x27;address&#x27;</pre></div>\n<table><tr><td>address_string</td>"
    f"<td>{ADDRESS}</td></tr></table></body></html>"
)
DJANGO_500_EXCERPT = (
    "KeyError at /requests.json KeyError at /requests.json 'address' address_string …"
)
BAD_REQUEST_HTML = "<html><body><h1>Bad Request (400)</h1></body></html>"
ERROR_LIST = '[{"code":400,"description":"Duplicate report: already reported nearby"}]'

NOT_ANSWERING = (
    "The office's system is not answering right now. Your application is saved and will be"
    " sent as soon as it is back. Your provisional reference is {ref}."
)
NEEDS_A_PERSON = (
    "The office's system did not accept your application, so a member of our staff will"
    " check it. It is saved: your provisional reference is {ref}. We will write to you"
    " here, in this conversation, when it is sent or if we need anything from you."
)
NEEDS_ATTENTION_LATER = (
    "Your application {ref} could not be sent to the office automatically. A member of our"
    " staff will check it and write to you here when it is sent or if we need anything"
    " from you."
)
# An Open311 id (101) is no reference a citizen can type: they keep their provisional one.
FILED_LATER = "Your application {ref} is now with the office. Reply STATUS {ref} to follow it."


def answers(count: int, status: int, body: str = "", **kw: Any) -> list[Answer]:
    return [Answer(status, body, **kw) for _ in range(count)]


@dataclass(frozen=True)
class Case:
    script: list[Answer]
    stage: str
    attempts: int
    kind: str
    status: int | None
    excerpt: str
    told_at_filing: str
    told_later: list[str]
    reason: str | None = None
    same: int = 1
    city_down: bool = False  # nothing listens: connection refused
    settings: dict[str, Any] = field(default_factory=dict)


CASES = {
    "connection refused": Case(
        [], "needs_attention", 4, "transient", None, "ConnectError",
        NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "attempts_cap", same=4, city_down=True,
    ),
    "timeout": Case(
        answers(4, 503, delay=1.5), "needs_attention", 4, "transient", None, "ReadTimeout",
        NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "attempts_cap", same=4,
    ),
    "502": Case(
        answers(4, 502, "<h1>502 Bad Gateway</h1>"), "needs_attention", 4, "transient", 502,
        "502 Bad Gateway", NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "attempts_cap", same=4,
    ),
    "503": Case(
        answers(4, 503, "Service Unavailable"), "needs_attention", 4, "transient", 503,
        "Service Unavailable", NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "attempts_cap",
        same=4,
    ),
    "504": Case(
        answers(4, 504, "<html><body>Gateway Timeout</body></html>"), "needs_attention", 4,
        "transient", 504, "Gateway Timeout", NOT_ANSWERING, [NEEDS_ATTENTION_LATER],
        "attempts_cap", same=4,
    ),
    "503 until the time cap": Case(
        answers(60, 503, "Service Unavailable"), "needs_attention", 0, "transient", 503,
        "Service Unavailable", NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "time_cap", same=0,
        settings={
            "submission_max_attempts_by_connector": {"open311": 50},
            "submission_max_hours_by_connector": {"open311": 1.5 / 3600},
        },
    ),
    # The retry base is an hour: only the server's Retry-After brings the retry this soon.
    "429 with Retry-After": Case(
        [Answer(429, "Slow down", headers={"Retry-After": "1"})], "received", 2, "transient",
        429, "Slow down", NOT_ANSWERING, [FILED_LATER],
        settings={"submission_retry_base_seconds": 3600.0},
    ),
    "400 error list": Case(
        [Answer(400, ERROR_LIST, "application/json")], "needs_attention", 1, "refused", 400,
        ERROR_LIST, NEEDS_A_PERSON, [], "refused",
    ),
    "400 HTML": Case(
        [Answer(400, BAD_REQUEST_HTML)], "needs_attention", 1, "refused", 400,
        "Bad Request (400)", NEEDS_A_PERSON, [], "refused",
    ),
    "500 HTML, the same body 3 times": Case(
        answers(3, 500, DJANGO_500), "needs_attention", 3, "refused", 500, DJANGO_500_EXCERPT,
        NOT_ANSWERING, [NEEDS_ATTENTION_LATER], "refused", same=3,
    ),
    "500 then 200": Case(
        [Answer(500, DJANGO_500)], "received", 2, "transient", 500, DJANGO_500_EXCERPT,
        NOT_ANSWERING, [FILED_LATER],
    ),
}  # fmt: skip


@pytest.fixture
def city() -> Iterator[tuple[Open311Double, ThreadedServer]]:
    double = Open311Double()
    with serve(double.app()) as server:
        yield double, server


def report_pothole(server: ThreadedServer, tmp_path: Path) -> str:
    driver = ActionDriver(server.url, tmp_path, "citizen-24")
    driver.user("there is a pothole", "apply_service", service="pothole")
    driver.run("validate_application_form")
    for answer in (ADDRESS, "2"):
        driver.user(answer)
        driver.run("validate_application_form", "field_answer")
    assert driver.slots["field_answer"] == "complete"
    return driver.texts("action_submit_application")


@pytest.mark.parametrize("name", list(CASES))
def test_each_backend_answer_ends_where_it_should_and_the_citizen_is_told_the_truth(
    tmp_path: Path,
    city: tuple[Open311Double, ThreadedServer],
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = CASES[name]
    double, server = city
    double.script = list(case.script)
    url = f"http://127.0.0.1:{free_port()}" if case.city_down else server.url
    values: dict[str, Any] = {
        "open311_base_url": url,
        "open311_api_key": API_KEY,
        "open311_service_codes": {"pothole": POTHOLE},
        "connector_timeout_seconds": 0.5,
        "submission_retry_base_seconds": 0.2,
        "submission_max_attempts": 4,
        "backend_same_error_refuses": 3,
        "worker_interval_seconds": 0.1,
    }
    settings = gateway_settings(tmp_path, "http://127.0.0.1:9", **{**values, **case.settings})
    with gateway(settings) as gateway_server:
        reply = report_pothole(gateway_server, tmp_path)
        [(ref,)] = query(tmp_path, "SELECT provisional_reference FROM applications")
        assert reply == case.told_at_filing.format(ref=ref)
        final = ("needs_attention", "received")
        wait_until(lambda: query(tmp_path, "SELECT stage FROM applications")[0][0] in final)
        told = [NEEDS_ATTENTION_LATER, FILED_LATER]
        sql = "SELECT text FROM messages ORDER BY id"

        def notified() -> list[str]:
            return [text for (text,) in query(tmp_path, sql) if text in {
                t.format(ref=ref) for t in told}]  # fmt: skip

        if case.told_later:
            wait_until(lambda: len(notified()) >= len(case.told_later))
        [row] = query(
            tmp_path,
            "SELECT stage, submit_attempts, last_error_kind, last_error_status,"
            " last_error_excerpt, same_error_count, needs_attention_reason,"
            " needs_attention_since IS NOT NULL, next_attempt_at IS NULL, answers"
            " FROM applications",
        )
        posts_before = double.posts
        scraped = scrape(gateway_server)
    waiting = 1.0 if case.stage == "needs_attention" else 0.0
    assert scraped["civicgate_applications_by_state"] == {
        ("open311", "needs_attention"): waiting,
        ("open311", "pending_submission"): 0.0,
        ("reference", "needs_attention"): 0.0,
        ("reference", "pending_submission"): 0.0,
    }
    moved = scraped.get("civicgate_applications_needs_attention_total", {})
    assert moved == ({("open311", case.reason): 1.0} if case.reason else {})
    stage, attempts, kind, status, excerpt, same, reason, since, unscheduled, _ = row
    expected_attempts = attempts if case.attempts == 0 else case.attempts  # time cap: any
    assert (stage, attempts, kind, status, excerpt) == (
        case.stage, expected_attempts, case.kind, case.status, case.excerpt,
    )  # fmt: skip
    assert same == (attempts if case.same == 0 else case.same)
    assert reason == case.reason
    assert since == (case.stage == "needs_attention")
    assert unscheduled  # nothing left to retry: accepted, or a person's
    assert notified() == [t.format(ref=ref) for t in case.told_later]
    assert ADDRESS not in (excerpt or "")  # never the citizen's answers
    [(application_id,)] = query(tmp_path, "SELECT id FROM applications")
    logged = [r.getMessage() for r in caplog.records if application_id in r.getMessage()]
    assert ADDRESS not in caplog.text
    if case.reason:
        answered = "no answer" if case.status is None else f"HTTP {case.status}"
        assert (
            f"application {application_id} needs attention ({case.reason}) after"
            f" {attempts} attempts: {answered}: {case.excerpt}"
        ) in logged
    if not case.city_down:  # every attempt reached the city, none after the end
        assert double.posts == posts_before == attempts
    if case.stage == "received":
        assert len(double.requests) == 1


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Pothole report PH-7K3Q9P: Being checked by our staff. The office's system did"
         " not take it automatically. A member of our staff is checking it and will write to"
         " you."),
        ("fr", "Signalement de nid-de-poule PH-7K3Q9P : En cours de vérification par notre"
         " équipe. Le système du bureau ne l'a pas prise en charge automatiquement. Un membre"
         " de notre équipe la vérifie et vous écrira."),
    ],
)  # fmt: skip
def test_status_of_an_application_needing_attention_says_a_person_checks_it(
    language: str, expected: str
) -> None:
    application = Application(
        stage="needs_attention", service_code="pothole", provisional_reference="PH-7K3Q9P"
    )
    assert describe_stage(application, localizer(language), load_catalogue()) == expected
