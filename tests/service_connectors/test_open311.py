"""Open311Connector (real httpx) against a GeoReport v2 city double on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service_connectors.base import (
    ApplicationNotFound,
    BackendMisconfigured,
    BackendUnavailable,
    ConnectorConfig,
    Stage,
    Submission,
    SubmissionRejected,
)
from service_connectors.catalogue import FieldType, Service, load_catalogue
from service_connectors.open311 import (
    Datatype,
    NumberedChoice,
    Open311Connector,
    field_descriptions,
    service_code_options,
)
from service_connectors.registry import connector_class
from support.open311_double import API_KEY, GRAFFITI, POTHOLE, STREETLIGHT, Open311Double
from support.servers import free_port, serve

CATALOGUE = load_catalogue()
CODES = f"pothole={POTHOLE}, streetlight={STREETLIGHT}, graffiti={GRAFFITI}"


@dataclass
class City:
    double: Open311Double
    url: str


@pytest.fixture
def city() -> Iterator[City]:
    double = Open311Double()
    with serve(double.app()) as server:
        yield City(double, server.url)


async def started(
    url: str, *, api_key: str | None = API_KEY, seconds: float = 5.0, **options: str
) -> Open311Connector:
    config = ConnectorConfig(
        base_url=url,
        api_key=api_key,
        timeout_seconds=seconds,
        options={**service_code_options(CODES), "token_poll_delay_seconds": "0.01", **options},
    )
    connector = Open311Connector(config)
    await connector.initialize()
    return connector


@pytest.fixture
async def connector(city: City) -> AsyncIterator[Open311Connector]:
    connector = await started(city.url)
    yield connector
    await connector.shutdown()


def pothole(key: str = "key-1", **fields: str) -> Submission:
    return Submission("pothole", {"location": "120 Bank St", "size": "medium", **fields}, key)


def service(code: str) -> Service:
    found = CATALOGUE.get(code)
    assert found is not None
    return found


def posted(double: Open311Double, index: int = -1) -> list[tuple[str, str]]:
    return double.forms()[index]


# --- catalogue import ----------------------------------------------------------------------------


async def test_list_services_gives_the_city_codes_and_names(connector: Open311Connector) -> None:
    remote = await connector.list_services()

    assert [(s.code, s.name) for s in remote] == [
        (POTHOLE, "Pothole"),
        (STREETLIGHT, "Streetlight out"),
        (GRAFFITI, "Graffiti removal"),
    ]


async def test_a_definition_becomes_ordered_catalogue_questions(
    connector: Open311Connector,
) -> None:
    definition = await connector.service_definition(POTHOLE)
    fields = field_descriptions(definition)

    assert [a.code for a in definition.attributes] == ["size", "NOTICE", "hazards", "depth_cm"]
    assert [(f.name, f.type, f.required, f.multiple) for f in fields] == [
        ("size", FieldType.CHOICE, True, False),
        ("hazards", FieldType.CHOICE, False, True),
        ("depth_cm", FieldType.NUMBER, False, False),
    ]  # the informational NOTICE is not a question
    assert fields[0].description == "How big is it?"
    assert fields[0].choices == (
        NumberedChoice(1, "small", "Smaller than a plate"),
        NumberedChoice(2, "medium", "About a tyre wide"),
        NumberedChoice(3, "large", "Larger than a tyre"),
    )


async def test_datatypes_and_numeric_keys_are_read(connector: Open311Connector) -> None:
    definition = await connector.service_definition(STREETLIGHT)
    fields = field_descriptions(definition)

    assert [a.datatype for a in definition.attributes] == [
        Datatype.SINGLEVALUELIST,
        Datatype.DATETIME,
    ]
    assert [f.type for f in fields] == [FieldType.CHOICE, FieldType.DATE]
    assert fields[0].choices[2] == NumberedChoice(3, "3", "On during the day")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("pothole", ["size", "hazards", "depth_cm"]), ("streetlight", ["problem", "noticed_at"])],
)
async def test_describe_fields_gives_the_attribute_codes(
    connector: Open311Connector, code: str, expected: list[str]
) -> None:
    assert await connector.describe_fields(service(code)) == expected


async def test_a_service_without_metadata_has_no_fields(connector: Open311Connector) -> None:
    graffiti = service("pothole").model_copy(update={"code": "graffiti"})

    assert await connector.describe_fields(graffiti) == []


async def test_a_service_the_city_does_not_offer_is_a_misconfiguration(
    connector: Open311Connector,
) -> None:
    with pytest.raises(BackendMisconfigured, match="dog_licence"):
        await connector.describe_fields(
            service("pothole").model_copy(update={"code": "dog_licence"})
        )
    with pytest.raises(BackendMisconfigured, match="nope"):
        await connector.service_definition("nope")


# --- submitting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"location": "120 Bank St"}, [("address_string", "120 Bank St")]),
        ({"location": "45.42150, -75.69720"}, [("lat", "45.42150"), ("long", "-75.69720")]),
        ({"location": "12, 4"}, [("address_string", "12, 4")]),
        ({"location": "99.5, 10.0"}, [("address_string", "99.5, 10.0")]),  # not a latitude
        (
            {"location": "Bank St", "lat": "45.4", "long": "-75.7"},
            [("lat", "45.4"), ("long", "-75.7"), ("address_string", "Bank St")],
        ),
    ],
)
async def test_a_location_is_sent_as_coordinates_or_an_address(
    connector: Open311Connector, city: City, fields: dict[str, str], location: list[tuple[str, str]]
) -> None:
    receipt = await connector.submit(pothole(**fields))

    form = posted(city.double)
    assert [(k, v) for k, v in form if k in ("lat", "long", "address_string")] == location
    assert (receipt.reference, receipt.stage, receipt.backend_id) == ("101", Stage.RECEIVED, "101")


async def test_the_form_carries_service_key_attributes_contact_and_marker(
    connector: Open311Connector, city: City
) -> None:
    await connector.submit(
        pothole("key-7", hazards="debris, water", depth_cm="12", email="ana@example.org")
    )

    form = posted(city.double)
    assert ("api_key", API_KEY) in form and ("service_code", POTHOLE) in form
    assert [(k, v) for k, v in form if k.startswith("attribute[")] == [
        ("attribute[size]", "medium"),
        ("attribute[hazards][]", "debris"),
        ("attribute[hazards][]", "water"),
        ("attribute[depth_cm]", "12"),
    ]
    assert ("email", "ana@example.org") in form
    description = dict(form)["description"]
    assert description.endswith("[civicgate:key-7]") and "size: medium" in description
    assert "jurisdiction_id" not in dict(form)


async def test_a_given_description_is_kept_and_marked(
    connector: Open311Connector, city: City
) -> None:
    await connector.submit(pothole(description="Deep one by the bus stop"))

    assert dict(posted(city.double))["description"] == "Deep one by the bus stop [civicgate:key-1]"


@pytest.mark.parametrize(
    ("city_jurisdiction", "ours", "accepted"),
    [("ottawa.ca", "ottawa.ca", True), ("ottawa.ca", None, False), ("ottawa.ca", "x.ca", False)],
)
async def test_the_jurisdiction_is_sent_when_configured(
    city_jurisdiction: str, ours: str | None, accepted: bool
) -> None:
    double = Open311Double(jurisdiction_id=city_jurisdiction)
    with serve(double.app()) as server:
        connector = await started(server.url, jurisdiction_id=ours or "")  # "": not set
        try:
            if accepted:
                await connector.submit(pothole())
                assert dict(posted(double))["jurisdiction_id"] == city_jurisdiction
            else:
                with pytest.raises(BackendMisconfigured, match="jurisdiction_id"):
                    await connector.submit(pothole())
        finally:
            await connector.shutdown()


@pytest.mark.parametrize("api_key", [None, "", "wrong-key"])
async def test_a_missing_or_refused_api_key_is_a_misconfiguration(
    city: City, api_key: str | None
) -> None:
    connector = await started(city.url, api_key=api_key)
    try:
        with pytest.raises(BackendMisconfigured):
            await connector.submit(pothole())
    finally:
        await connector.shutdown()

    assert city.double.posts == (1 if api_key else 0) and city.double.requests == {}


@pytest.mark.parametrize(
    ("submission", "field", "reason"),
    [
        (Submission("pothole", {"location": "120 Bank St"}, "k"), "size", "is required"),
        (pothole(size="huge"), "size", "must be one of large, medium, small"),
        (pothole(hazards="debris, lava"), "hazards", "must be one of"),
        (Submission("pothole", {"size": "small"}, "k"), "location", "address_string"),
        (Submission("streetlight", {"location": "Elgin St"}, "k"), "problem", "is required"),
    ],
)
async def test_validation_errors_name_the_field(
    connector: Open311Connector, city: City, submission: Submission, field: str, reason: str
) -> None:
    with pytest.raises(SubmissionRejected) as caught:
        await connector.submit(submission)

    assert list(caught.value.field_errors) == [field]
    assert reason in caught.value.field_errors[field]
    assert city.double.requests == {}


async def test_a_batch_service_is_polled_until_its_token_names_the_request(
    connector: Open311Connector, city: City
) -> None:
    receipt = await connector.submit(Submission("graffiti", {"location": "Elgin St"}, "g-1"))

    assert (receipt.reference, receipt.stage) == ("101", Stage.RECEIVED)
    assert list(city.double.requests) == ["101"]


async def test_a_token_still_pending_is_unavailable_then_resolved_on_retry(city: City) -> None:
    city.double.token_polls = 3
    connector = await started(city.url, token_polls="1")
    graffiti = Submission("graffiti", {"location": "Elgin St"}, "g-1")
    try:
        with pytest.raises(BackendUnavailable, match="token"):
            await connector.submit(graffiti)
        with pytest.raises(BackendUnavailable, match="token"):
            await connector.submit(graffiti)
        receipt = await connector.submit(graffiti)
    finally:
        await connector.shutdown()

    assert receipt.reference == "101" and city.double.posts == 1


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_retried_submit_files_once(connector: Open311Connector, city: City) -> None:
    first = await connector.submit(pothole("key-1"))
    again = await connector.submit(pothole("key-1"))
    other = await connector.submit(pothole("key-2"))

    assert again == first != other
    assert city.double.posts == 2


async def test_concurrent_submits_with_one_key_file_once(
    connector: Open311Connector, city: City
) -> None:
    receipts = await asyncio.gather(*(connector.submit(pothole("key-1")) for _ in range(4)))

    assert len(set(receipts)) == 1 and len(city.double.requests) == 1


async def test_a_request_filed_but_unanswered_is_found_on_retry(city: City) -> None:
    city.double.accept_then_fail = 1
    first, second = await started(city.url), await started(city.url)  # e.g. after a restart
    try:
        with pytest.raises(BackendUnavailable):
            await first.submit(pothole("key-1"))
        receipt = await second.submit(pothole("key-1"))
    finally:
        await first.shutdown()
        await second.shutdown()

    assert list(city.double.requests) == [receipt.backend_id]


async def test_without_the_lookup_a_lost_answer_means_a_duplicate(city: City) -> None:
    """The trade-off of ``lookup_days=0`` (for cities that offer no request search)."""
    city.double.accept_then_fail = 1
    connector = await started(city.url, lookup_days="0")
    try:
        with pytest.raises(BackendUnavailable):
            await connector.submit(pothole("key-1"))
        await connector.submit(pothole("key-1"))
    finally:
        await connector.shutdown()

    assert len(city.double.requests) == 2


# --- status --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "stage", "note"),
    [
        ({}, Stage.RECEIVED, "agency: Public Works"),
        ({"status": "open", "updated_datetime": "2099-01-01T00:00:00Z"}, Stage.IN_REVIEW, None),
        (
            {
                "status": "open",
                "notes": "Crew scheduled",
                "expected_datetime": "2030-05-01T09:00:00Z",
            },
            Stage.IN_REVIEW,
            "Crew scheduled; agency: Public Works; expected: 2030-05-01T09:00:00+00:00",
        ),
        ({"status": "closed", "notes": "Filled"}, Stage.APPROVED, "Filled; agency: Public Works"),
        ({"status": "acknowledged"}, Stage.IN_REVIEW, "agency: Public Works"),  # not in the spec
    ],
)
async def test_the_city_status_maps_to_a_stage(
    connector: Open311Connector, city: City, change: dict[str, Any], stage: Stage, note: str | None
) -> None:
    receipt = await connector.submit(pothole())
    if change:
        city.double.update(receipt.backend_id, **change)

    report = await connector.get_status(receipt.backend_id)

    assert (report.reference, report.stage) == (receipt.reference, stage)
    assert note is None or report.note == note
    assert report.updated_at is not None and report.updated_at.tzinfo is not None


@pytest.mark.parametrize("backend_id", ["999", "", "..", "a/b", "../services"])
async def test_unknown_requests_are_not_found(connector: Open311Connector, backend_id: str) -> None:
    with pytest.raises(ApplicationNotFound):
        await connector.get_status(backend_id)


# --- outages -------------------------------------------------------------------------------------


async def test_a_city_that_is_down_is_unavailable_then_recovers(
    connector: Open311Connector, city: City
) -> None:
    city.double.down_for = 2
    for _ in range(2):
        with pytest.raises(BackendUnavailable, match="503"):
            await connector.submit(pothole())

    receipt = await connector.submit(pothole())

    assert list(city.double.requests) == [receipt.backend_id] and city.double.posts == 3


async def test_nothing_listening_is_unavailable() -> None:
    connector = await started(f"http://127.0.0.1:{free_port()}")
    try:
        for call in (
            connector.list_services(),
            connector.submit(pothole()),
            connector.get_status("1"),
        ):
            with pytest.raises(BackendUnavailable):
                await call
    finally:
        await connector.shutdown()


def misbehaving_city(status: int, body: bytes, delay: float = 0.0) -> Starlette:
    """Answers every request alike: a city having a bad day."""

    async def answer(request: Request) -> Response:
        await asyncio.sleep(delay)
        return Response(body, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.mark.parametrize(
    ("status", "body", "on_submit", "on_status"),
    [
        (500, b'[{"code": 500, "description": "Database down"}]', BackendUnavailable, None),
        (502, b"<html>Bad gateway</html>", BackendUnavailable, None),
        (200, b"<html>maintenance page</html>", BackendUnavailable, None),
        (200, b'[{"status": "open"}]', BackendUnavailable, None),
        (
            404,
            b'[{"code": 404, "description": "Not found"}]',
            BackendMisconfigured,
            ApplicationNotFound,
        ),
        (401, b"", BackendMisconfigured, None),
    ],
)
async def test_a_misbehaving_city_maps_to_connector_errors(
    status: int, body: bytes, on_submit: type[Exception], on_status: type[Exception] | None
) -> None:
    with serve(misbehaving_city(status, body)) as server:
        connector = await started(server.url)
        try:
            with pytest.raises(on_submit) as caught:
                await connector.submit(pothole())  # the marker lookup meets it first
            with pytest.raises(on_status or on_submit):
                await connector.get_status("101")
        finally:
            await connector.shutdown()

    if status == 500:
        assert "Database down" in str(caught.value)
    if status == 404:
        assert "lookup_days=0" in str(caught.value)


async def test_a_slow_city_times_out_as_unavailable() -> None:
    with serve(misbehaving_city(200, b"[]", delay=1.0)) as server:
        connector = await started(server.url, seconds=0.1)
        try:
            with pytest.raises(BackendUnavailable, match="Timeout"):
                await connector.list_services()
        finally:
            await connector.shutdown()


# --- configuration -------------------------------------------------------------------------------


def test_service_codes_come_from_one_setting() -> None:
    assert service_code_options(" pothole = abc , streetlight=def ,") == {
        "service_code.pothole": "abc",
        "service_code.streetlight": "def",
    }
    with pytest.raises(ValueError, match="ours=theirs"):
        service_code_options("pothole")


def test_the_registry_knows_the_open311_kind() -> None:
    assert connector_class("open311") is Open311Connector
