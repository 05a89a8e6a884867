"""ReferenceConnector against real servers on loopback: the reference backend, one that is
not there, and small misbehaving ones. No httpx mocks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
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
    ConnectorError,
    ServiceConnector,
    Stage,
    Submission,
    SubmissionRejected,
)
from service_connectors.catalogue import Service, load_catalogue
from service_connectors.reference import ReferenceConnector
from service_connectors.reference_backend import create_app
from service_connectors.registry import (
    CONNECTOR_CLASSES,
    CONNECTORS,
    connector_class,
    index_by_kind,
)
from support.servers import free_port, serve

API_KEY = "test-api-key"
OPERATOR_TOKEN = "test-operator-token"
REFERENCE = re.compile(r"^[A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6}$")
CATALOGUE = load_catalogue()
BIRTH_CERTIFICATE_FIELDS = {
    "child_full_name": "Maria Lopez",
    "child_date_of_birth": "2019-03-21",
    "place_of_birth": "Ottawa",
    "parent_full_name": "Ana Lopez",
}


def birth_certificate(key: str = "key-1", **fields: str) -> Submission:
    return Submission("birth_certificate", {**BIRTH_CERTIFICATE_FIELDS, **fields}, key)


def service(code: str) -> Service:
    found = CATALOGUE.get(code)
    assert found is not None
    return found


@pytest.fixture
def backend_url(tmp_path: Path) -> Iterator[str]:
    app = create_app(f"sqlite:///{tmp_path / 'backend.db'}", API_KEY, OPERATOR_TOKEN)
    with serve(app) as server:
        yield server.url


async def started(base_url: str, api_key: str | None = API_KEY, **config: Any) -> ServiceConnector:
    connector = ReferenceConnector(ConnectorConfig(base_url=base_url, api_key=api_key, **config))
    await connector.initialize()
    return connector


@pytest.fixture
async def connector(backend_url: str) -> AsyncIterator[ServiceConnector]:
    connector = await started(backend_url)
    yield connector
    await connector.shutdown()


async def advance(backend_url: str, reference: str, **body: str) -> httpx.Response:
    """The clerk's side, which the connector deliberately cannot reach."""
    async with httpx.AsyncClient(base_url=backend_url) as clerk:
        return await clerk.post(
            f"/operator/applications/{reference}/advance",
            headers={"X-Operator-Token": OPERATOR_TOKEN},
            json=body,
        )


async def filed_references(backend_url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=backend_url) as clerk:
        response = await clerk.get(
            "/operator/applications", headers={"X-Operator-Token": OPERATOR_TOKEN}
        )
    return [a["reference"] for a in response.json()]


# --- services --------------------------------------------------------------------------------


async def test_list_services_matches_the_catalogue(connector: ServiceConnector) -> None:
    remote = await connector.list_services()

    assert [(s.code, s.name) for s in remote] == [(s.code, s.name) for s in CATALOGUE.services]
    assert remote[0].field_names == (
        "child_full_name",
        "child_date_of_birth",
        "place_of_birth",
        "parent_full_name",
    )


@pytest.mark.parametrize("code", CATALOGUE.codes)
async def test_describe_fields_agrees_with_the_catalogue(
    connector: ServiceConnector, code: str
) -> None:
    expected = [f.name for f in service(code).fields]

    assert await connector.describe_fields(service(code)) == expected


async def test_a_service_the_backend_does_not_offer_is_a_misconfiguration(
    connector: ServiceConnector,
) -> None:
    not_offered = service("pothole").model_copy(update={"code": "dog_licence"})

    with pytest.raises(BackendMisconfigured, match="dog_licence"):
        await connector.describe_fields(not_offered)


# --- submitting --------------------------------------------------------------------------------


async def test_submit_returns_a_receipt_with_the_backend_reference(
    connector: ServiceConnector,
) -> None:
    receipt = await connector.submit(birth_certificate())

    assert REFERENCE.match(receipt.reference) and receipt.reference.startswith("BC-")
    assert receipt.stage is Stage.RECEIVED
    assert receipt.backend_id == receipt.reference


async def test_prefix_follows_the_service(connector: ServiceConnector) -> None:
    streetlight = Submission("streetlight", {"location": "45 Elgin St", "problem": "out"}, "k")

    assert (await connector.submit(streetlight)).reference.startswith("SL-")


async def test_a_retried_submit_files_once(connector: ServiceConnector, backend_url: str) -> None:
    first = await connector.submit(birth_certificate("key-1"))
    retried = await connector.submit(birth_certificate("key-1"))

    assert retried == first
    assert await filed_references(backend_url) == [first.reference]


@pytest.mark.parametrize("copies", [2, 6])
async def test_concurrent_submits_with_one_key_file_once(
    connector: ServiceConnector, backend_url: str, copies: int
) -> None:
    receipts = await asyncio.gather(
        *(connector.submit(birth_certificate("key-1")) for _ in range(copies))
    )

    assert len(set(receipts)) == 1
    assert await filed_references(backend_url) == [receipts[0].reference]


async def test_different_keys_file_different_applications(connector: ServiceConnector) -> None:
    receipts = await asyncio.gather(
        *(connector.submit(birth_certificate(f"k{n}")) for n in range(4))
    )

    assert len({r.reference for r in receipts}) == 4


async def test_field_errors_become_submission_rejected(connector: ServiceConnector) -> None:
    incomplete = Submission(
        "birth_certificate",
        {"child_full_name": "Maria Lopez", "place_of_birth": "X", "pet": "cat"},
        "key-1",
    )

    with pytest.raises(SubmissionRejected) as caught:
        await connector.submit(incomplete)

    assert set(caught.value.field_errors) == {
        "child_date_of_birth",
        "place_of_birth",
        "parent_full_name",
        "pet",
    }
    assert caught.value.field_errors["parent_full_name"] == "this field is required"


async def test_an_unknown_service_is_rejected_on_service_code(connector: ServiceConnector) -> None:
    with pytest.raises(SubmissionRejected) as caught:
        await connector.submit(Submission("dog_licence", {"name": "Rex"}, "key-1"))

    assert list(caught.value.field_errors) == ["service_code"]


async def test_reusing_a_key_for_other_data_is_rejected(connector: ServiceConnector) -> None:
    await connector.submit(birth_certificate("key-1"))

    with pytest.raises(SubmissionRejected):
        await connector.submit(birth_certificate("key-1", place_of_birth="Gatineau"))


# --- status --------------------------------------------------------------------------------------


async def test_status_follows_the_clerk_through_every_stage(
    connector: ServiceConnector, backend_url: str
) -> None:
    receipt = await connector.submit(birth_certificate())
    report = await connector.get_status(receipt.backend_id)
    assert (report.reference, report.stage, report.note) == (
        receipt.reference,
        Stage.RECEIVED,
        None,
    )
    seen = [report.updated_at]

    for note in (None, "Documents checked", None):
        response = await advance(backend_url, receipt.reference, **({"note": note} if note else {}))
        assert response.status_code == 200
        report = await connector.get_status(receipt.backend_id)
        assert report.note == note
        seen.append(report.updated_at)

    assert report.stage is Stage.READY_FOR_COLLECTION
    assert all(isinstance(at, datetime) and at.tzinfo is not None for at in seen)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert (await advance(backend_url, receipt.reference)).status_code == 409


async def test_a_rejection_and_its_reason_reach_the_status(
    connector: ServiceConnector, backend_url: str
) -> None:
    receipt = await connector.submit(birth_certificate())
    await advance(backend_url, receipt.reference)
    await advance(backend_url, receipt.reference, stage="rejected", note="Photo ID missing")

    report = await connector.get_status(receipt.backend_id)

    assert (report.stage, report.note) == (Stage.REJECTED, "Photo ID missing")
    assert (await advance(backend_url, receipt.reference, stage="approved")).status_code == 409


async def test_status_accepts_a_lowercase_reference(connector: ServiceConnector) -> None:
    receipt = await connector.submit(birth_certificate())

    report = await connector.get_status(receipt.reference.lower())

    assert report.reference == receipt.reference


@pytest.mark.parametrize("backend_id", ["BC-22222A", "", "..", "../operator/applications", "a/b"])
async def test_unknown_references_are_not_found(
    connector: ServiceConnector, backend_id: str
) -> None:
    with pytest.raises(ApplicationNotFound):
        await connector.get_status(backend_id)


# --- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["wrong-key", OPERATOR_TOKEN])
async def test_a_refused_api_key_is_a_misconfiguration(backend_url: str, api_key: str) -> None:
    connector = await started(backend_url, api_key=api_key)
    try:
        with pytest.raises(BackendMisconfigured):
            await connector.submit(birth_certificate())
        with pytest.raises(BackendMisconfigured):
            await connector.get_status("BC-22222A")
    finally:
        await connector.shutdown()


async def test_a_missing_api_key_fails_before_any_request(backend_url: str) -> None:
    connector = await started(backend_url, api_key=None)
    try:
        with pytest.raises(BackendMisconfigured, match="api_key"):
            await connector.submit(birth_certificate())
        assert len(await connector.list_services()) == len(CATALOGUE.services)  # public
    finally:
        await connector.shutdown()


def test_misconfiguration_is_neither_unavailable_nor_rejected() -> None:
    """Callers retry BackendUnavailable and re-ask on SubmissionRejected: neither fits."""
    assert issubclass(BackendMisconfigured, ConnectorError)
    assert not issubclass(BackendMisconfigured, BackendUnavailable | SubmissionRejected)


# --- a backend that is down, slow or broken ----------------------------------------------------


async def test_nothing_listening_is_backend_unavailable() -> None:
    connector = await started(f"http://127.0.0.1:{free_port()}", timeout_seconds=2.0)
    try:
        with pytest.raises(BackendUnavailable):
            await connector.list_services()
        with pytest.raises(BackendUnavailable):
            await connector.submit(birth_certificate())
        with pytest.raises(BackendUnavailable):
            await connector.get_status("BC-22222A")
    finally:
        await connector.shutdown()


async def test_a_stopped_backend_is_unavailable_then_recovers(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'backend.db'}"
    port = free_port()
    with serve(create_app(database_url, API_KEY, OPERATOR_TOKEN), port=port) as server:
        connector = await started(server.url)
        receipt = await connector.submit(birth_certificate())
    try:
        with pytest.raises(BackendUnavailable):
            await connector.get_status(receipt.backend_id)
        with serve(create_app(database_url, API_KEY, OPERATOR_TOKEN), port=port):
            assert (await connector.get_status(receipt.backend_id)).stage is Stage.RECEIVED
    finally:
        await connector.shutdown()


def misbehaving_backend(status: int, body: bytes = b"{}", delay: float = 0.0) -> Starlette:
    """Answers every request alike: a department having a bad day."""

    async def answer(request: Request) -> Response:
        await asyncio.sleep(delay)
        return Response(body, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"detail": "boom"}'),
        (502, b"<html>Bad gateway</html>"),
        (503, b""),
        (429, b'{"detail": "slow down"}'),
        (200, b"<html>maintenance page</html>"),
        (201, b'{"reference": "BC-22222A"}'),
        (200, b'{"reference": "BC-22222A", "stage": "archived", "updated_at": "2026-01-01"}'),
    ],
)
async def test_server_errors_and_garbage_are_backend_unavailable(status: int, body: bytes) -> None:
    with serve(misbehaving_backend(status, body)) as server:
        connector = await started(server.url)
        try:
            with pytest.raises(BackendUnavailable):
                await connector.submit(birth_certificate())
            with pytest.raises(BackendUnavailable):
                await connector.get_status("BC-22222A")
        finally:
            await connector.shutdown()


async def test_a_slow_backend_times_out_as_unavailable() -> None:
    with serve(misbehaving_backend(200, delay=1.0)) as server:
        connector = await started(server.url, timeout_seconds=0.1)
        try:
            with pytest.raises(BackendUnavailable, match="Timeout"):
                await connector.list_services()
        finally:
            await connector.shutdown()


async def test_an_unreadable_422_is_still_a_rejection() -> None:
    with serve(misbehaving_backend(422, b"not json")) as server:
        connector = await started(server.url)
        try:
            with pytest.raises(SubmissionRejected) as caught:
                await connector.submit(birth_certificate())
        finally:
            await connector.shutdown()

    assert caught.value.field_errors == {}


# --- lifecycle -----------------------------------------------------------------------------------


async def test_an_injected_client_needs_no_base_url_and_is_not_closed(backend_url: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        connector = ReferenceConnector(
            ConnectorConfig(base_url=backend_url, api_key=API_KEY), client
        )
        await connector.initialize()

        receipt = await connector.submit(birth_certificate())
        await connector.shutdown()

        assert not client.is_closed
        assert (await connector.get_status(receipt.backend_id)).stage is Stage.RECEIVED


async def test_using_a_connector_before_initialize_is_a_programming_error() -> None:
    connector = ReferenceConnector(ConnectorConfig(base_url="http://127.0.0.1:1", api_key="k"))

    with pytest.raises(RuntimeError, match="initialize"):
        await connector.list_services()


# --- registry ------------------------------------------------------------------------------------


def test_the_registry_knows_the_reference_kind() -> None:
    assert connector_class("reference") is ReferenceConnector
    assert {cls.kind: cls for cls in CONNECTOR_CLASSES} == CONNECTORS


def test_every_catalogue_connector_kind_is_registered() -> None:
    for entry in CATALOGUE.services:
        assert issubclass(connector_class(entry.connector), ServiceConnector)


def test_an_unknown_kind_is_a_clear_key_error() -> None:
    known = r"known: open311, reference, rest"
    with pytest.raises(KeyError, match=rf"unknown connector kind 'fax'.*{known}"):
        connector_class("fax")


def test_two_classes_cannot_claim_one_kind() -> None:
    class Impostor(ReferenceConnector):
        pass

    with pytest.raises(ValueError, match="claimed by ReferenceConnector and Impostor"):
        index_by_kind((ReferenceConnector, Impostor))


def test_the_registry_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        CONNECTORS["fax"] = ReferenceConnector  # type: ignore[index]
