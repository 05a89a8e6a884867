"""The catalogue-driven application form, driven through the real action endpoint.

Rasa's part (which action runs next) is played by the test; the gateway, its database
and the reference backend are real and on loopback.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from support.db import query
from support.driver import ActionDriver
from support.servers import ThreadedServer
from support.stack import ACTION_TOKEN, BACKEND_API_KEY, backend_id

REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")


def fill_birth_certificate(driver: ActionDriver) -> None:
    driver.user("i need a birth cert", "apply_service", service="birth_certificate")
    intro = driver.texts("validate_application_form")
    assert "4 questions" in intro
    assert driver.slots["service"] == "birth_certificate"
    assert "child's full name" in driver.texts("action_ask_field_answer", "field_answer")
    for answer in ("Maria Lopez", "21/03/2019", "Ottawa", "Ana Lopez"):
        driver.user(answer)
        driver.run("validate_application_form", "field_answer")
    assert driver.slots["field_answer"] == "complete"


def test_action_endpoint_refuses_callers_without_the_token(gateway_server: ThreadedServer) -> None:
    body = {"next_action": "action_help", "sender_id": "x", "tracker": {"sender_id": "x"}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ACTION_TOKEN}):
        response = httpx.post(f"{gateway_server.url}/rasa/actions", json=body, headers=headers)
        assert response.status_code == 403


def test_unknown_action_is_refused_in_rasa_s_format(driver: ActionDriver) -> None:
    response = httpx.post(
        f"{driver.url}/rasa/actions",
        json={
            "next_action": "action_nope",
            "sender_id": driver.conversation_id,
            "tracker": {"sender_id": driver.conversation_id},
        },
        headers={"Authorization": f"Bearer {ACTION_TOKEN}"},
    )
    assert response.status_code == 404
    assert response.json()["action_name"] == "action_nope"


def test_fields_are_asked_in_catalogue_order_and_bad_answers_get_a_hint(
    driver: ActionDriver,
) -> None:
    driver.user("apply", "apply_service")
    assert driver.texts("validate_application_form") == ""
    ask = driver.run("action_ask_service", "service")
    assert ask[0]["buttons"][0]["title"] == "Birth certificate"
    driver.user("birth certificat")  # misspelled, typed while the service is asked
    driver.run("validate_application_form", "service")
    assert driver.slots["service"] == "birth_certificate"

    prompts = []
    for answer in (
        "Maria Lopez",
        "32/13/2019",
        "12/12/2999",
        "21 march 2019",
        "Ottawa",
        "Ana Lopez",
    ):
        prompts.append(driver.texts("action_ask_field_answer", "field_answer"))
        driver.user(answer)
        prompts.append(driver.texts("validate_application_form", "field_answer"))
    assert "(1 of 4)" in prompts[0] and "full name" in prompts[0]
    assert "date of birth" in prompts[2] and "(2 of 4)" in prompts[2]
    assert "could not read that date" in prompts[3] and "21/03/2019" in prompts[3]
    assert "in the future" in prompts[5]
    assert "(3 of 4)" in prompts[8] and "(4 of 4)" in prompts[10]

    summary = driver.texts("action_ask_confirmation", "confirmation")
    assert "Maria Lopez" in summary and "March 21, 2019" in summary and "Ottawa" in summary


def test_a_detail_can_be_changed_before_sending(
    driver: ActionDriver, backend: ThreadedServer, tmp_path: Path
) -> None:
    fill_birth_certificate(driver)
    driver.user("2")  # "Change something"
    driver.run("validate_application_form", "confirmation")
    choose = driver.run("action_ask_confirmation", "confirmation")
    assert [b["title"] for b in choose[0]["buttons"]][2] == "Place of birth"
    driver.user("3")
    driver.run("validate_application_form", "confirmation")
    assert driver.slots["field_answer"] is None
    assert "born" in driver.texts("action_ask_field_answer", "field_answer")
    driver.user("Toronto")
    driver.run("validate_application_form", "field_answer")
    assert "Toronto" in driver.texts("action_ask_confirmation", "confirmation")
    driver.user("yes", "affirm")
    driver.run("validate_application_form", "confirmation")
    assert driver.slots["confirmation"] == "yes"

    reply = driver.texts("action_submit_application")
    reference = REFERENCE.search(reply)
    assert reference and reference.group(1).startswith("BC-")
    filed = httpx.get(  # the backend knows it by its own id, the citizen by ours
        f"{backend.url}/applications/{backend_id(tmp_path, reference.group(1))}",
        headers={"Authorization": f"Bearer {BACKEND_API_KEY}"},
    ).json()
    assert filed["stage"] == "received"
    assert driver.slots["service"] is None


def test_cancel_drops_the_draft(driver: ActionDriver, tmp_path: Path) -> None:
    fill_birth_certificate(driver)
    driver.active_loop = "application_form"
    driver.user("cancel", "cancel", 0.95)
    assert driver.run("validate_application_form", "confirmation") == []  # Rasa's rules take over
    assert "Nothing was sent" in driver.texts("action_cancel")
    assert driver.active_loop is None
    assert query(tmp_path, "SELECT count(*) FROM application_drafts") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM applications") == [(0,)]


def test_backend_outage_keeps_the_application_with_a_provisional_reference(
    driver: ActionDriver, backend: ThreadedServer, tmp_path: Path
) -> None:
    fill_birth_certificate(driver)
    driver.user("1")
    driver.run("validate_application_form", "confirmation")
    backend.stop()
    reply = driver.texts("action_submit_application")
    assert "saved" in reply
    reference = REFERENCE.search(reply)
    assert reference is not None
    rows = query(tmp_path, "SELECT provisional_reference, stage FROM applications")
    assert rows == [(reference.group(1), "pending_submission")]


def test_a_second_misunderstanding_in_a_row_offers_a_person(driver: ActionDriver) -> None:
    """The fallback counts the citizen's recent intents from the tracker's events."""
    driver.user("blorp", "nlu_fallback")
    first = driver.texts("action_fallback")
    assert "person" not in first.lower()
    driver.user("zzzt", "nlu_fallback")
    offer = driver.run("action_fallback")
    assert "still do not understand" in offer[-1]["text"]
    assert [b["title"] for b in offer[-1]["buttons"]] == ["Talk to a person", "Show the menu"]
    driver.user("passport", "service_info")
    driver.user("qwfp", "nlu_fallback")
    assert "still do not understand" not in driver.texts("action_fallback")


def test_action_endpoint_answers_a_malformed_body_with_422(gateway_server: ThreadedServer) -> None:
    headers = {"Authorization": f"Bearer {ACTION_TOKEN}"}
    for content in (b"{not json", b'{"next_action": "action_help"}', b""):
        response = httpx.post(
            f"{gateway_server.url}/rasa/actions", content=content, headers=headers
        )
        assert response.status_code == 422, response.text
