"""RestConnector driven by departments/example_permits.yml against a permits-office double
on loopback (tests/support/department_double.py). No httpx mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service_connectors.base import (
    ApplicationNotFound,
    BackendMisconfigured,
    BackendUnavailable,
    ConnectorConfig,
    ConnectorError,
    Stage,
    Submission,
    SubmissionRejected,
)
from service_connectors.catalogue import Service, load_catalogue
from service_connectors.registry import connector_class
from service_connectors.rest import (
    DEPARTMENTS_DIR,
    DepartmentSpec,
    RestConnector,
    department_configs,
    load_department,
)
from support.department_double import PermitsOffice
from support.servers import serve

SPEC_PATH = DEPARTMENTS_DIR / "example_permits.yml"
SECRET_ENV = "EXAMPLE_PERMITS_API_TOKEN"
TOKEN = "permits-test-token"
FIELDS = {
    "full_name": "Ana Lopez",
    "date_of_birth": "1980-11-05",
    "location": "King St between 1st and 2nd Ave",
    "event_date": "2026-07-01",
}


def street_party(key: str = "key-1", **fields: str) -> Submission:
    return Submission("street_party_permit", {**FIELDS, **fields}, key, language="fr")


def catalogue_service(code: str) -> Service:
    """A catalogue entry routed to the office (the shipped catalogue has none yet)."""
    pothole = load_catalogue().get("pothole")
    assert pothole is not None
    return pothole.model_copy(update={"code": code, "connector": "example_permits"})


@pytest.fixture
def office() -> Iterator[PermitsOffice]:
    office = PermitsOffice(TOKEN)
    with serve(office.app) as server:
        office.url = f"{server.url}/api"
        yield office


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, TOKEN)
    return TOKEN


async def started(
    base_url: str, spec: DepartmentSpec | None = None, timeout_seconds: float = 5.0
) -> RestConnector:
    config = ConnectorConfig(
        base_url=base_url, timeout_seconds=timeout_seconds, options={"spec_path": str(SPEC_PATH)}
    )
    connector = RestConnector(config, spec=spec)
    await connector.initialize()
    return connector


@pytest.fixture
async def connector(office: PermitsOffice, secret: str) -> AsyncIterator[RestConnector]:
    connector = await started(office.url)
    yield connector
    await connector.shutdown()


# --- the description ------------------------------------------------------------------------


def test_the_example_description_loads() -> None:
    spec = load_department(SPEC_PATH)

    assert (spec.name, spec.auth and spec.auth.secret_env) == ("example_permits", SECRET_ENV)
    assert spec.stages["under_review"] is Stage.IN_REVIEW


def _without_auth_secret_env(raw: dict[str, Any]) -> None:
    raw["auth"] = {"header": "Authorization", "secret": TOKEN}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_without_auth_secret_env, "secret"),
        (lambda raw: raw["status"].update(path="/v2/permit-applications"), "{id}"),
        (lambda raw: raw["submit"].update(path="/v2/{office}/applications"), "office"),
        (lambda raw: raw["submit"]["constants"].update({"applicant": "x"}), "overlap"),
        (lambda raw: raw["submit"]["fields"].update(location="event.date"), "twice"),
        (lambda raw: raw["stages"].update(pending="in_review"), "case"),
        (lambda raw: raw["stages"].update(ON_HOLD="paused"), "ON_HOLD"),
        (lambda raw: raw.update(base_url="permits.example.org"), "base_url"),
    ],
    ids=["inline-secret", "no-id", "placeholder", "overlap", "twice", "case", "stage", "url"],
)
def test_a_broken_description_is_refused_naming_the_file(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], complaint: str
) -> None:
    raw = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    change(raw)
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(raw), encoding="utf-8")

    with pytest.raises(ValueError, match=r"broken\.yml") as caught:
        load_department(broken)
    assert complaint in str(caught.value)


def test_the_gateway_can_build_it_from_configs() -> None:
    configs = department_configs([SPEC_PATH], timeout_seconds=3.0)

    config = configs["example_permits"]
    connector = connector_class(config.options["kind"])(config)

    assert isinstance(connector, RestConnector)
    assert connector.config.base_url == "https://permits.example.org/api"
    assert connector.config.timeout_seconds == 3.0


# --- services -----------------------------------------------------------------------------


async def test_list_services_keeps_the_office_titles_under_our_codes(
    connector: RestConnector,
) -> None:
    remote = await connector.list_services()

    assert [(s.code, s.name) for s in remote] == [
        ("street_party_permit", "Street party"),
        ("sidewalk_cafe_permit", "Sidewalk café"),
    ]
    assert remote[0].field_names == ("full_name", "date_of_birth", "location", "event_date")


async def test_describe_fields_names_our_fields_and_refuses_unknown_services(
    connector: RestConnector,
) -> None:
    assert await connector.describe_fields(catalogue_service("street_party_permit")) == list(FIELDS)
    with pytest.raises(BackendMisconfigured, match="dog_licence"):
        await connector.describe_fields(catalogue_service("dog_licence"))


# --- submitting ---------------------------------------------------------------------------


async def test_fields_arrive_as_the_office_nested_body(
    connector: RestConnector, office: PermitsOffice
) -> None:
    receipt = await connector.submit(street_party())

    assert office.bodies == [
        {
            "applicant": {"name": "Ana Lopez", "birth_date": "1980-11-05", "locale": "fr"},
            "event": {"address": "King St between 1st and 2nd Ave", "date": "2026-07-01"},
            "permit": {"type": "STREET_PARTY"},
            "channel": "civicgate",
            "consent": {"terms_accepted": True},
        }
    ]
    assert (receipt.reference, receipt.backend_id, receipt.stage) == (
        "EP-2026-0017",
        "17",
        Stage.RECEIVED,
    )


async def test_a_retried_submit_files_one_application(
    connector: RestConnector, office: PermitsOffice
) -> None:
    first = await connector.submit(street_party("same-key"))
    retried = await connector.submit(street_party("same-key"))
    other = await connector.submit(street_party("other-key"))

    assert retried == first
    assert other.backend_id != first.backend_id
    assert len(office.applications) == 2


@pytest.mark.parametrize(
    ("answers", "field_errors"),
    [
        ({"full_name": "  "}, {"full_name": "is required"}),
        ({"event_date": "next friday"}, {"event_date": "must be a date like 2026-07-01"}),
        (
            {"full_name": "", "event_date": "soon"},
            {"full_name": "is required", "event_date": "must be a date like 2026-07-01"},
        ),
    ],
)
async def test_a_422_names_our_fields(
    connector: RestConnector,
    office: PermitsOffice,
    answers: dict[str, str],
    field_errors: dict[str, str],
) -> None:
    with pytest.raises(SubmissionRejected) as caught:
        await connector.submit(street_party(**answers))

    assert caught.value.field_errors == field_errors
    assert office.applications == {}


async def test_an_error_on_none_of_our_fields_is_kept_in_the_message(
    office: PermitsOffice, secret: str
) -> None:
    spec = load_department(SPEC_PATH)
    spec = spec.model_copy(
        update={"submit": spec.submit.model_copy(update={"constants": {"channel": "civicgate"}})}
    )
    connector = await started(office.url, spec=spec)
    try:
        with pytest.raises(SubmissionRejected, match="/consent/terms_accepted") as caught:
            await connector.submit(street_party())
    finally:
        await connector.shutdown()

    assert caught.value.field_errors == {}


async def test_an_unmapped_field_is_refused_before_sending(
    connector: RestConnector, office: PermitsOffice
) -> None:
    with pytest.raises(BackendMisconfigured, match="attendees"):
        await connector.submit(street_party(attendees="120"))

    assert office.bodies == []


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "stage"),
    [
        ("PENDING", Stage.RECEIVED),
        ("UNDER_REVIEW", Stage.IN_REVIEW),
        ("GRANTED", Stage.APPROVED),
        ("DENIED", Stage.REJECTED),
        ("READY", Stage.READY_FOR_COLLECTION),
        ("under_review", Stage.IN_REVIEW),
        ("Granted", Stage.APPROVED),
    ],
)
async def test_status_words_map_to_stages(
    connector: RestConnector, office: PermitsOffice, word: str, stage: Stage
) -> None:
    receipt = await connector.submit(street_party())
    filed = office.applications[int(receipt.backend_id)]
    filed.state, filed.remarks = word, "Bring the road closure plan"

    report = await connector.get_status(receipt.backend_id)

    assert (report.reference, report.stage, report.note) == (
        receipt.reference,
        stage,
        "Bring the road closure plan",
    )
    assert report.updated_at == filed.modified
    assert isinstance(report.updated_at, datetime) and report.updated_at.tzinfo is not None


async def test_an_unknown_status_word_is_a_misconfiguration(
    connector: RestConnector, office: PermitsOffice
) -> None:
    receipt = await connector.submit(street_party())
    office.applications[int(receipt.backend_id)].state = "ON_HOLD"

    with pytest.raises(BackendMisconfigured, match="ON_HOLD"):
        await connector.get_status(receipt.backend_id)


@pytest.mark.parametrize("backend_id", ["999", "abc", "", "..", "../permit-types", "17/x"])
async def test_unknown_ids_are_not_found(connector: RestConnector, backend_id: str) -> None:
    with pytest.raises(ApplicationNotFound):
        await connector.get_status(backend_id)


# --- auth ---------------------------------------------------------------------------------


async def test_a_missing_secret_variable_stops_initialize(
    office: PermitsOffice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)

    with pytest.raises(BackendMisconfigured, match=SECRET_ENV):
        await started(office.url)


async def test_a_connector_used_before_initialize_is_a_programming_error() -> None:
    connector = RestConnector(ConnectorConfig(base_url="", options={"spec_path": str(SPEC_PATH)}))

    with pytest.raises(RuntimeError, match="initialize"):
        await connector.submit(street_party())


# --- an office that is down, slow, refusing or garbled ------------------------------------


def _down(office: PermitsOffice, monkeypatch: pytest.MonkeyPatch) -> None:
    office.down = True


def _slow(office: PermitsOffice, monkeypatch: pytest.MonkeyPatch) -> None:
    office.delay = 1.0


def _wrong_token(office: PermitsOffice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-token")


@pytest.mark.parametrize(
    ("trouble", "error"),
    [
        (_down, BackendUnavailable),
        (_slow, BackendUnavailable),
        (_wrong_token, BackendMisconfigured),
    ],
    ids=["503", "timeout", "401"],
)
async def test_office_trouble_maps_to_connector_errors(
    office: PermitsOffice,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
    trouble: Callable[[PermitsOffice, pytest.MonkeyPatch], None],
    error: type[ConnectorError],
) -> None:
    trouble(office, monkeypatch)
    connector = await started(office.url, timeout_seconds=0.2)
    try:
        with pytest.raises(error):
            await connector.submit(street_party())
        with pytest.raises(error):
            await connector.get_status("17")
        with pytest.raises(error):
            await connector.list_services()
    finally:
        await connector.shutdown()
    assert office.applications == {}


def garbled_office(body: bytes) -> Starlette:
    """Answers 200 with ``body`` to everything: a proxy or a drifted API."""

    async def answer(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<html>maintenance</html>", BackendUnavailable),
        (b'{"data": {"id": 1}}', BackendMisconfigured),
        (b'{"data": {"id": 1, "case_number": "X", "state": ["PENDING"]}}', BackendMisconfigured),
        (b'{"types": "none"}', BackendMisconfigured),
    ],
)
async def test_answers_it_cannot_read(secret: str, body: bytes, error: type[Exception]) -> None:
    with serve(garbled_office(body)) as server:
        connector = await started(server.url)
        try:
            with pytest.raises(error):
                await connector.submit(street_party())
            with pytest.raises(error):
                await connector.get_status("1")
            with pytest.raises(error):
                await connector.list_services()
        finally:
            await connector.shutdown()


def test_the_registry_knows_the_rest_kind() -> None:
    assert connector_class("rest") is RestConnector
