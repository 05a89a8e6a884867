"""Issue 24 through the whole gateway: a real gateway (actions, background polling,
notifications, database) files potholes with an Open311 city double that speaks another
server's dialect: it reads ``address`` only, offers no ``GET /requests.json``, stamps
``updated_datetime`` microseconds after creation and issues ids shaped like references
(``zpn9b29p``). Rasa's part (which action runs next) is played by the test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from bot.connectors import connector_configs
from bot.settings import Settings
from support.db import database_url, execute, query, wait_until
from support.driver import ActionDriver
from support.open311_double import API_KEY, POTHOLE, STREETLIGHT, Open311Double
from support.servers import ThreadedServer, serve
from support.stack import alembic_config, gateway, gateway_settings

SENT = (
    "Your application for: Pothole report is sent. Your reference is {reference}."
    " To follow it, reply STATUS {reference}."
)
RECEIVED = (
    "Pothole report {reference}: Received. The office has your application."
    " It will be checked soon."
)
APPROVED = (
    "Update: Pothole report {reference}: Approved."
    " Your application is approved. We will tell you when it is ready."
)
OURS = re.compile(r"PH-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6}")
DIALECT = {"open311_address_field": "address", "open311_request_search": False}


def open311_settings(directory: Path, backend_url: str, city_url: str, **extra: Any) -> Settings:
    return gateway_settings(
        directory,
        backend_url,
        open311_base_url=city_url,
        open311_api_key=API_KEY,
        open311_service_codes={"pothole": POTHOLE, "streetlight": STREETLIGHT},
        worker_interval_seconds=0.05,
        status_poll_interval_seconds=0.3,  # polled again and again: each poll is seen whole
        **{**DIALECT, **extra},
    )


@pytest.fixture
def city() -> Iterator[tuple[Open311Double, ThreadedServer]]:
    double = Open311Double(
        address_field="address",
        search=False,
        update_lag=timedelta(microseconds=4),
        reference_like_ids=True,
    )
    with serve(double.app()) as server:
        yield double, server


@pytest.fixture
def driver(
    tmp_path: Path, backend: ThreadedServer, city: tuple[Open311Double, ThreadedServer]
) -> Iterator[ActionDriver]:
    settings = open311_settings(tmp_path, backend.url, city[1].url)
    with gateway(settings) as server:
        yield ActionDriver(server.url, tmp_path, "+15145550124")


def report_pothole(driver: ActionDriver) -> str:
    """The citizen reports a pothole at 120 Bank St: what they are told when it is filed."""
    driver.user("there is a pothole", "apply_service", service="pothole")
    driver.run("validate_application_form")
    assert "Where is the pothole" in driver.texts("action_ask_field_answer", "field_answer")
    driver.user("120 Bank St")
    driver.run("validate_application_form", "field_answer")
    assert "How big" in driver.texts("action_ask_field_answer", "field_answer")
    driver.user("2")
    driver.run("validate_application_form", "field_answer")
    assert driver.slots["field_answer"] == "complete"
    driver.texts("action_ask_confirmation", "confirmation")
    driver.user("yes", "affirm")
    driver.run("validate_application_form", "confirmation")
    assert driver.slots["confirmation"] == "yes"
    return driver.texts("action_submit_application")


def status_of(driver: ActionDriver, text: str, reference: str) -> str:
    """``STATUS <reference>`` answering the status form's question: the status told."""
    driver.slots, driver.active_loop = {}, "status_form"
    driver.user(text, "check_status")
    assert driver.run("validate_status_form", "reference") == []
    assert driver.slots["reference"] == reference
    return driver.texts("action_check_status")


def application(directory: Path) -> tuple[Any, ...]:
    [row] = query(
        directory,
        "SELECT reference, provisional_reference, backend_id, stage FROM applications",
    )
    return tuple(row)


def notifications(directory: Path) -> list[str]:
    rows = query(
        directory,
        "SELECT text FROM messages WHERE channel = 'notification' OR text LIKE 'Update:%'",
    )
    return [row[0] for row in rows]


def test_the_citizen_is_told_our_reference_and_the_city_gets_the_address(
    driver: ActionDriver, city: tuple[Open311Double, ThreadedServer], tmp_path: Path
) -> None:
    reply = report_pothole(driver)

    reference, provisional, backend_id, stage = application(tmp_path)
    assert OURS.fullmatch(provisional)
    assert reply == SENT.format(reference=provisional)
    assert (reference, backend_id, stage) == (provisional, "zpn9b29p", "received")
    assert "zpn9b29p" not in reply.lower() and "ZP-N9B29P" not in reply
    double = city[0]
    assert [(r["address"], r["service_code"]) for r in double.requests.values()] == [
        ("120 Bank St", POTHOLE)
    ]
    assert double.searches == 0  # never asked for a search the city does not offer

    assert status_of(driver, f"STATUS {provisional}", provisional) == RECEIVED.format(
        reference=provisional
    )
    assert double.lookups >= 1  # the STATUS read the city, within the creation window


def test_the_creation_timestamp_is_not_a_stage_change(
    driver: ActionDriver, city: tuple[Open311Double, ThreadedServer], tmp_path: Path
) -> None:
    report_pothole(driver)
    double = city[0]
    [request] = double.requests.values()
    assert request["updated_datetime"] > request["requested_datetime"]  # microseconds later

    wait_until(lambda: double.lookups >= 3)  # polled three times: the first two seen whole

    reference, provisional, backend_id, stage = application(tmp_path)
    assert (reference, backend_id, stage) == (provisional, "zpn9b29p", "received")
    assert notifications(tmp_path) == []
    assert query(tmp_path, "SELECT count(*) FROM deliveries") == [(0,)]


def test_a_real_change_is_told_once_with_our_reference(
    driver: ActionDriver, city: tuple[Open311Double, ThreadedServer], tmp_path: Path
) -> None:
    report_pothole(driver)
    _, provisional, _, _ = application(tmp_path)
    city[0].update("zpn9b29p", "closed", "Filled on Tuesday.")

    wait_until(lambda: application(tmp_path)[3] == "approved")
    seen = city[0].lookups
    wait_until(lambda: city[0].lookups >= seen + 2)

    assert notifications(tmp_path) == [APPROVED.format(reference=provisional)]


def test_an_application_whose_reference_is_the_city_s_id_keeps_both_references(
    driver: ActionDriver, tmp_path: Path
) -> None:
    """Filed before issue 24: the citizen was told "Your reference is zpn9b29p"."""
    report_pothole(driver)
    _, provisional, _, _ = application(tmp_path)
    assert execute(tmp_path, "UPDATE applications SET reference = 'zpn9b29p'") == 1
    config = alembic_config(database_url(tmp_path))
    command.downgrade(config, "0008")
    command.upgrade(config, "head")  # 0009: such references are stored as typed back

    assert application(tmp_path)[:3] == ("ZP-N9B29P", provisional, "zpn9b29p")
    told = RECEIVED.format(reference="ZP-N9B29P")
    assert status_of(driver, "STATUS zpn9b29p", "ZP-N9B29P") == told
    assert status_of(driver, f"STATUS {provisional}", provisional) == told


def test_the_dialect_comes_from_settings(tmp_path: Path) -> None:
    def options(**values: Any) -> dict[str, str]:
        settings = open311_settings(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", **values)
        return connector_configs(settings)["open311"].options

    assert {k: options()[k] for k in ("address_field", "request_search")} == {
        "address_field": "address",
        "request_search": "false",
    }
    spec = options(
        open311_address_field="address_string",
        open311_request_search=True,
        open311_attribute_format="attributes[{code}]",
        open311_creation_window_seconds=0.5,
        open311_jurisdiction_id="city.example.org",
    )
    assert {
        k: spec[k]
        for k in (
            "address_field",
            "attribute_format",
            "request_search",
            "creation_window_seconds",
            "jurisdiction_id",
        )
    } == {
        "address_field": "address_string",
        "attribute_format": "attributes[{code}]",
        "request_search": "true",
        "creation_window_seconds": "0.5",
        "jurisdiction_id": "city.example.org",
    }
    with pytest.raises(ValueError, match="code"):
        open311_settings(tmp_path, "http://x", "http://x", open311_attribute_format="attr")
