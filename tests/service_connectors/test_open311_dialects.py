"""Open311 servers written independently of each other (issue 24): the connector's dialect
options against a city double that speaks each dialect, both ways — the spec's default
fails against the other server exactly as in the field, the option makes it work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta

import pytest

from bot.actions.submission import citizen_reference
from bot.db.models import Application
from service_connectors.base import (
    BackendMisconfigured,
    BackendUnavailable,
    ConnectorConfig,
    Receipt,
    Stage,
    Submission,
    SubmissionRejected,
)
from service_connectors.catalogue import find_reference
from service_connectors.open311 import Open311Connector, service_code_options
from service_connectors.rest import DEPARTMENTS_DIR, RestConnector
from support.department_double import PermitsOffice
from support.open311_double import API_KEY, POTHOLE, STREETLIGHT, Open311Double
from support.servers import serve

CODES = f"pothole={POTHOLE}, streetlight={STREETLIGHT}"
PERMITS = DEPARTMENTS_DIR / "example_permits.yml"


@contextmanager
def city(**dialect: object) -> Iterator[tuple[Open311Double, str]]:
    double = Open311Double(**dialect)  # type: ignore[arg-type]
    with serve(double.app()) as server:
        yield double, server.url


@asynccontextmanager
async def connector(url: str, **options: str) -> AsyncIterator[Open311Connector]:
    config = ConnectorConfig(
        base_url=url, api_key=API_KEY, options={**service_code_options(CODES), **options}
    )
    instance = Open311Connector(config)
    await instance.initialize()
    try:
        yield instance
    finally:
        await instance.shutdown()


def pothole(key: str = "key-1", **fields: str) -> Submission:
    return Submission("pothole", {"location": "120 Bank St", "size": "medium", **fields}, key)


# --- the address field ------------------------------------------------------------------------


async def test_a_server_reading_address_never_gets_an_address_string() -> None:
    """What happened in the field: the spec's field is not read, the report is refused."""
    with city(address_field="address") as (double, url):
        async with connector(url) as open311:
            with pytest.raises(SubmissionRejected) as caught:
                await open311.submit(pothole())

    assert caught.value.field_errors == {"location": "lat/long or address is required"}
    assert double.requests == {} and double.posts == 1


async def test_address_field_sends_the_street_address_as_address() -> None:
    with city(address_field="address") as (double, url):
        async with connector(url, address_field="address") as open311:
            receipt = await open311.submit(pothole())

    [request] = double.requests.values()
    assert request["address"] == "120 Bank St"
    assert [(k, v) for k, v in request["form"] if "address" in k] == [("address", "120 Bank St")]
    assert (receipt.backend_id, receipt.stage) == ("101", Stage.RECEIVED)


async def test_the_spec_s_address_string_is_the_default() -> None:
    with city() as (double, url):
        async with connector(url) as open311:
            await open311.submit(pothole())

    [request] = double.requests.values()
    assert request["address"] == "120 Bank St"
    assert [(k, v) for k, v in request["form"] if "address" in k] == [
        ("address_string", "120 Bank St")
    ]


# --- attribute naming -------------------------------------------------------------------------


async def test_attribute_naming_follows_the_server() -> None:
    with city(attribute_format="attributes[{code}]") as (double, url):
        async with connector(url) as spec:  # the spec's naming: the server misses the size
            with pytest.raises(SubmissionRejected, match=r"attributes\[size\] is required"):
                await spec.submit(pothole())
        async with connector(url, attribute_format="attributes[{code}]") as open311:
            await open311.submit(pothole(hazards="debris, water"))

    [request] = double.requests.values()
    assert [(k, v) for k, v in request["form"] if k.startswith("attribute")] == [
        ("attributes[size]", "medium"),
        ("attributes[hazards][]", "debris"),
        ("attributes[hazards][]", "water"),
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"attribute_format": "attribute[code]"},  # no {code}
        {"attribute_format": "attribute[{code}] x"},  # not a field name
        {"address_field": "street address"},
        {"request_search": "sometimes"},
    ],
)
def test_a_dialect_that_cannot_be_right_stops_startup(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="open311"):
        Open311Connector(ConnectorConfig(base_url="http://127.0.0.1:9", options=options))


# --- the idempotency search ---------------------------------------------------------------


async def test_without_request_search_the_search_is_never_called() -> None:
    with city(search=False) as (double, url):
        async with connector(url, request_search="false") as open311:
            first = await open311.submit(pothole("key-1"))
            other = await open311.submit(pothole("key-2"))

    assert double.searches == 0
    assert (first.backend_id, other.backend_id) == ("101", "102")
    assert list(double.requests) == ["101", "102"]


async def test_relying_on_a_search_the_server_lacks_files_nothing() -> None:
    """The default against such a server: a configuration problem, and no request filed."""
    with city(search=False) as (double, url):
        async with connector(url) as open311:
            with pytest.raises(BackendMisconfigured, match="OPEN311_REQUEST_SEARCH=false"):
                await open311.submit(pothole())

    assert (double.searches, double.posts, double.requests) == (1, 0, {})


async def test_with_request_search_a_retry_finds_the_request_filed_before() -> None:
    with city(accept_then_fail=1) as (double, url):
        async with connector(url) as open311:
            with pytest.raises(BackendUnavailable, match="503"):
                await open311.submit(pothole("key-1"))
            receipt = await open311.submit(pothole("key-1"))

    assert double.searches == 2 and double.posts == 1
    assert list(double.requests) == [receipt.backend_id] == ["101"]


# --- the creation timestamp ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lag", "options", "stage"),
    [
        (timedelta(microseconds=7), {}, Stage.RECEIVED),  # the server stamping a new request
        (timedelta(seconds=1, microseconds=900_000), {}, Stage.RECEIVED),
        (timedelta(seconds=5), {}, Stage.IN_REVIEW),  # someone touched it after
        (timedelta(microseconds=7), {"creation_window_seconds": "0"}, Stage.IN_REVIEW),
    ],
)
async def test_an_update_stamped_at_creation_is_not_a_stage_change(
    lag: timedelta, options: dict[str, str], stage: Stage
) -> None:
    with city(update_lag=lag) as (double, url):
        async with connector(url, **options) as open311:
            receipt = await open311.submit(pothole())
            report = await open311.get_status(receipt.backend_id)
        [request] = double.requests.values()

    assert request["requested_datetime"] != request["updated_datetime"]
    assert (report.stage, receipt.stage) == (stage, Stage.RECEIVED)


async def test_status_notes_move_it_to_review_even_within_the_window() -> None:
    with city(update_lag=timedelta(microseconds=7)) as (double, url):
        async with connector(url) as open311:
            receipt = await open311.submit(pothole())
            double.requests[receipt.backend_id]["status_notes"] = "Crew scheduled"
            report = await open311.get_status(receipt.backend_id)

    assert (report.stage, report.note) == (Stage.IN_REVIEW, "Crew scheduled; agency: Public Works")


# --- ids shaped like references -------------------------------------------------------------


async def test_an_id_shaped_like_a_reference_stays_the_backend_s() -> None:
    with city(reference_like_ids=True) as (double, url):
        async with connector(url) as open311:
            first = await open311.submit(pothole("key-1"))
            second = await open311.submit(pothole("key-2"))
            status = await open311.get_status(first.backend_id)

    assert first == Receipt("zpn9b29p", Stage.RECEIVED, "zpn9b29p")
    assert find_reference(first.backend_id) == "ZP-N9B29P"  # what used to mislead us
    assert second.backend_id == "xk7m2q4r" and list(double.requests) == ["zpn9b29p", "xk7m2q4r"]
    assert (status.reference, status.stage) == ("zpn9b29p", Stage.RECEIVED)
    application = Application(provisional_reference="PH-7K3Q9P")
    assert citizen_reference(application) == "PH-7K3Q9P"


# --- a department described in YAML -----------------------------------------------------------


async def test_a_department_s_case_number_is_for_staff_not_the_citizen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXAMPLE_PERMITS_API_TOKEN", "permits-test-token")
    office = PermitsOffice("permits-test-token")
    with serve(office.app) as server:
        config = ConnectorConfig(base_url=f"{server.url}/api", options={"spec_path": str(PERMITS)})
        permits = RestConnector(config)
        await permits.initialize()
        try:
            receipt = await permits.submit(
                Submission(
                    "street_party_permit",
                    {
                        "full_name": "Ana Lopez",
                        "date_of_birth": "1980-11-05",
                        "location": "King St",
                        "event_date": "2026-07-01",
                    },
                    "key-1",
                )
            )
        finally:
            await permits.shutdown()

    assert receipt == Receipt("EP-2026-0017", Stage.RECEIVED, "17")
    application = Application(provisional_reference="SP-7K3Q9P")
    assert citizen_reference(application) == "SP-7K3Q9P"
