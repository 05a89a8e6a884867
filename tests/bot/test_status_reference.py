"""The status form's reference question, through the real action endpoint (Rasa's part,
which action runs next, is played by the test; gateway, database and backend are real).

``STATUS <reference>`` in any supported language is an answer to "What is your
application reference?"; the applications this conversation filed are offered first as
options; the prompts' example reference is visibly fake and never a reference.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_application_actions import REFERENCE, fill_birth_certificate

from bot.actions.status import ASK_REFERENCE, NOT_A_REFERENCE, ONLY_AN_EXAMPLE
from bot.i18n import localizer
from service_connectors.catalogue import EXAMPLE_REFERENCE, find_reference, new_reference
from support.db import as_datetime, query
from support.driver import ActionDriver
from support.servers import ThreadedServer

WORDS = localizer("en")
ASK = WORDS.gettext(ASK_REFERENCE).format(example=EXAMPLE_REFERENCE)
RECEIVED = "Birth certificate {reference}: Received. The office has your application. It will be checked soon."  # noqa: E501
CYRILLIC = str.maketrans("BCKP", "ВСКР")  # what a Cyrillic keyboard makes of them


def apply(driver: ActionDriver) -> str:
    """File a birth certificate in the driver's conversation: its reference."""
    fill_birth_certificate(driver)
    driver.user("1")
    driver.run("validate_application_form", "confirmation")
    found = REFERENCE.search(driver.texts("action_submit_application"))
    assert found is not None
    return found.group(1)


def ask_status(driver: ActionDriver) -> list[dict[str, object]]:
    """The citizen asks for a status: the form starts and asks the reference."""
    driver.slots = {}
    driver.active_loop = "status_form"
    driver.user("where is my application", "check_status")
    assert driver.run("validate_status_form") == []
    return driver.run("action_ask_reference", "reference")


def filed_on(directory: Path) -> str:
    [(created,)] = query(directory, "SELECT created_at FROM applications")
    return WORDS.date(as_datetime(created).astimezone(ZoneInfo("America/Toronto")).date())


@pytest.mark.parametrize(
    ("answer", "intent"),
    [
        pytest.param("STATUS {reference}", "check_status", id="STATUS"),
        pytest.param("status {lower}", "check_status", id="status-lower-case"),
        pytest.param("Statut {reference}", "check_status", id="French"),
        pytest.param("СТАТУС {cyrillic}", "check_status", id="Russian-on-a-Cyrillic-keyboard"),
        pytest.param("STATUS {reference}", "nlu_fallback", id="STATUS-not-understood"),
        pytest.param("{reference}", "nlu_fallback", id="the-reference-alone"),
        pytest.param("my reference is {reference} thanks", "nlu_fallback", id="in-a-sentence"),
        pytest.param('/check_status{{"reference": "{reference}"}}', "check_status",
                     id="the-offered-option"),
    ],
)  # fmt: skip
def test_the_reference_question_takes_status_and_the_reference(
    driver: ActionDriver, tmp_path: Path, answer: str, intent: str
) -> None:
    reference = apply(driver)
    asked = ask_status(driver)
    payload = f'/check_status{{"reference": "{reference}"}}'
    title = f"{reference} (your application of {filed_on(tmp_path)})"
    assert asked == [{"text": ASK, "buttons": [{"title": title, "payload": payload}]}]

    text = answer.format(
        reference=reference, lower=reference.lower(), cyrillic=reference.translate(CYRILLIC)
    )
    entities = {"reference": reference} if text.startswith("/") else {}
    driver.user(text, intent, **entities)
    assert driver.run("validate_status_form", "reference") == []
    assert driver.slots["reference"] == reference
    assert driver.slots["verification_answer"] == "applicant"  # this conversation filed it
    assert driver.texts("action_check_status") == RECEIVED.format(reference=reference)


def test_applications_filed_here_are_offered_latest_first(
    driver: ActionDriver, tmp_path: Path
) -> None:
    first, second = apply(driver), apply(driver)
    [asked] = ask_status(driver)
    day = filed_on_all(tmp_path)
    assert asked["buttons"] == [
        {"title": f"{ref} (your application of {day})",
         "payload": f'/check_status{{"reference": "{ref}"}}'}
        for ref in (second, first)
    ]  # fmt: skip


def filed_on_all(directory: Path) -> str:
    days = {
        WORDS.date(as_datetime(created).astimezone(ZoneInfo("America/Toronto")).date())
        for (created,) in query(directory, "SELECT created_at FROM applications")
    }
    assert len(days) == 1
    return days.pop()


def test_another_conversation_s_applications_are_not_offered(
    driver: ActionDriver, gateway_server: ThreadedServer, tmp_path: Path
) -> None:
    apply(driver)
    other = ActionDriver(gateway_server.url, tmp_path, "+15145550199")
    assert ask_status(other) == [{"text": ASK}]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        pytest.param(EXAMPLE_REFERENCE, ONLY_AN_EXAMPLE, id="the-example-copied"),
        pytest.param(f"STATUS {EXAMPLE_REFERENCE}", ONLY_AN_EXAMPLE, id="STATUS-the-example"),
        pytest.param(EXAMPLE_REFERENCE.lower(), ONLY_AN_EXAMPLE, id="the-example-lower-case"),
        pytest.param("I do not know it", NOT_A_REFERENCE, id="no-reference"),
        pytest.param("STATUS", NOT_A_REFERENCE, id="STATUS-alone"),
    ],
)
def test_what_is_not_a_reference_is_explained(driver: ActionDriver, text: str, reply: str) -> None:
    assert ask_status(driver) == [{"text": ASK}]
    driver.user(text)
    assert driver.run("validate_status_form", "reference") == [
        {"text": WORDS.gettext(reply).format(example=EXAMPLE_REFERENCE)}
    ]
    assert driver.slots["reference"] is None


def test_a_status_request_naming_the_example_is_explained_before_the_question(
    driver: ActionDriver,
) -> None:
    driver.active_loop = "status_form"
    driver.user(f"status {EXAMPLE_REFERENCE}", "check_status")
    only = WORDS.gettext(ONLY_AN_EXAMPLE).format(example=EXAMPLE_REFERENCE)
    assert driver.run("validate_status_form") == [{"text": only}]
    assert driver.run("action_ask_reference", "reference") == [{"text": ASK}]


def test_status_with_another_reference_while_the_second_factor_is_asked_is_that_reference(
    driver: ActionDriver, gateway_server: ThreadedServer, tmp_path: Path
) -> None:
    reference = apply(driver)
    stranger = ActionDriver(gateway_server.url, tmp_path, "+15145550199")
    ask_status(stranger)
    stranger.user(reference)
    assert stranger.run("validate_status_form", "reference") == []
    assert stranger.slots["verification_answer"] is None  # the second factor is asked
    unknown = "BC-22222A" if reference != "BC-22222A" else "BC-33333A"
    stranger.user(f"STATUS {unknown}", "check_status")
    assert stranger.texts("validate_status_form", "verification_answer") == (
        f"I cannot find an application with the reference {unknown}."
        " Please check it, or reply EXIT."
    )
    assert stranger.slots["reference"] is None
    assert query(tmp_path, "SELECT count(*) FROM verification_attempts") == [(0,)]  # no guess


def test_the_example_reference_is_never_a_reference() -> None:
    for text in (EXAMPLE_REFERENCE, EXAMPLE_REFERENCE.lower(), "PP-XXXXXX", "BCXXXXXX",
                 f"STATUS {EXAMPLE_REFERENCE}", "ВС-ХХХХХХ"):  # fmt: skip
        assert find_reference(text) is None, text
    assert "7K3Q9P" not in ASK  # a real-looking example was copied by citizens


def test_prompts_show_only_the_fake_example() -> None:
    for language in ("en", "fr", "ru"):
        words = localizer(language)
        for message in (ASK_REFERENCE, NOT_A_REFERENCE, ONLY_AN_EXAMPLE):
            text = words.gettext(message).format(example=EXAMPLE_REFERENCE)
            assert EXAMPLE_REFERENCE in text, (language, text)
            assert find_reference(text) is None, (language, text)


def test_the_example_reference_is_never_issued(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter("XXXXXX" + "7K3Q9P")  # the first draw is the example's body
    monkeypatch.setattr(secrets, "choice", lambda _alphabet: next(drawn))
    assert new_reference("BC") == "BC-7K3Q9P"
