"""The reference backend over real HTTP on loopback, with its SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, func, select

from service_connectors.base import Stage
from service_connectors.catalogue import find_reference, load_catalogue
from service_connectors.reference_backend import create_app
from service_connectors.reference_backend.__main__ import (
    DEV_SECRETS,
    resolve_secrets,
    sqlite_url,
)
from service_connectors.reference_backend.models import Application
from service_connectors.reference_backend.store import (
    ApplicationStore,
    TransitionRefusedError,
    new_reference,
)
from support.servers import free_port, serve, wait_for_http

API_KEY = "test-api-key"
OPERATOR_TOKEN = "test-operator-token"
GATEWAY = {"Authorization": f"Bearer {API_KEY}"}
OPERATOR = {"X-Operator-Token": OPERATOR_TOKEN}
REFERENCE = re.compile(r"^[A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6}$")
BIRTH_CERTIFICATE: dict[str, Any] = {
    "service_code": "birth_certificate",
    "language": "en",
    "fields": {
        "child_full_name": "Maria Lopez",
        "child_date_of_birth": "2019-03-21",
        "place_of_birth": "Ottawa",
        "parent_full_name": "Ana Lopez",
    },
}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "reference_backend.db"


@pytest.fixture
def backend_url(database: Path) -> Iterator[str]:
    with serve(create_app(f"sqlite:///{database}", API_KEY, OPERATOR_TOKEN)) as server:
        yield server.url


@pytest.fixture
def http(backend_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend_url, timeout=10) as client:
        yield client


def file(http: httpx.Client, key: str, body: dict[str, Any] = BIRTH_CERTIFICATE) -> httpx.Response:
    return http.post("/applications", headers={**GATEWAY, "Idempotency-Key": key}, json=body)


def advance(http: httpx.Client, reference: str, **body: str) -> httpx.Response:
    return http.post(f"/operator/applications/{reference}/advance", headers=OPERATOR, json=body)


def count_applications(database: Path) -> int:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Application)) or 0
    finally:
        engine.dispose()


# --- the department's forms ------------------------------------------------------------------


def test_healthz(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200


def test_services_are_the_catalogue_with_fields_in_order(http: httpx.Client) -> None:
    response = http.get("/services")

    assert response.status_code == 200
    expected = [
        {"code": s.code, "name": s.name, "fields": [f.name for f in s.fields]}
        for s in load_catalogue().services
    ]
    assert response.json() == expected


def test_one_service_and_an_unknown_one(http: httpx.Client) -> None:
    assert http.get("/services/birth_certificate").json()["fields"] == [
        "child_full_name",
        "child_date_of_birth",
        "place_of_birth",
        "parent_full_name",
    ]
    assert http.get("/services/dog_licence").status_code == 404


# --- filing --------------------------------------------------------------------------------------


def test_filing_issues_a_reference_with_the_service_prefix(http: httpx.Client) -> None:
    response = file(http, "key-1")

    assert response.status_code == 201
    body = response.json()
    assert REFERENCE.match(body["reference"]) and body["reference"].startswith("BC-")
    assert body["service_code"] == "birth_certificate"
    assert body["stage"] == "received"
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert body["created_at"] == body["updated_at"]


def test_each_service_gets_its_own_prefix(http: httpx.Client) -> None:
    pothole = {"service_code": "pothole", "fields": {"location": "120 Bank St", "size": "large"}}

    assert file(http, "pothole-1", pothole).json()["reference"].startswith("PH-")


def test_same_idempotency_key_returns_the_same_application(
    http: httpx.Client, database: Path
) -> None:
    first = file(http, "key-1")
    again = file(http, "key-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert count_applications(database) == 1


async def test_concurrent_submits_with_one_key_file_once(backend_url: str, database: Path) -> None:
    headers = {**GATEWAY, "Idempotency-Key": "same-key"}
    async with httpx.AsyncClient(base_url=backend_url, timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post("/applications", headers=headers, json=BIRTH_CERTIFICATE)
                for _ in range(8)
            )
        )

    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["reference"] for r in responses}) == 1
    assert count_applications(database) == 1


async def test_concurrent_submits_with_different_keys_get_different_references(
    backend_url: str, database: Path
) -> None:
    async with httpx.AsyncClient(base_url=backend_url, timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/applications",
                    headers={**GATEWAY, "Idempotency-Key": f"key-{n}"},
                    json=BIRTH_CERTIFICATE,
                )
                for n in range(8)
            )
        )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["reference"] for r in responses}) == 8
    assert count_applications(database) == 8


def test_reusing_a_key_for_different_data_is_refused(http: httpx.Client, database: Path) -> None:
    file(http, "key-1")
    other = {
        **BIRTH_CERTIFICATE,
        "fields": {**BIRTH_CERTIFICATE["fields"], "place_of_birth": "Hull"},
    }

    assert file(http, "key-1", other).status_code == 409
    assert count_applications(database) == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {API_KEY}", "Bearer", f"Bearer {OPERATOR_TOKEN}"],
)
def test_filing_needs_the_api_key(http: httpx.Client, authorization: str | None) -> None:
    headers = {"Idempotency-Key": "key-1"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = http.post("/applications", headers=headers, json=BIRTH_CERTIFICATE)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("key", [None, "", "k" * 201])
def test_filing_needs_an_idempotency_key(http: httpx.Client, key: str | None) -> None:
    headers = dict(GATEWAY) if key is None else {**GATEWAY, "Idempotency-Key": key}

    assert http.post("/applications", headers=headers, json=BIRTH_CERTIFICATE).status_code == 400


def _with_fields(**changes: Any) -> dict[str, Any]:
    fields = {**BIRTH_CERTIFICATE["fields"], **changes}
    return {**BIRTH_CERTIFICATE, "fields": {k: v for k, v in fields.items() if v is not None}}


@pytest.mark.parametrize(
    ("body", "fields_in_error"),
    [
        pytest.param(
            {**BIRTH_CERTIFICATE, "service_code": "dog_licence"},
            ["service_code"],
            id="unknown-service",
        ),
        pytest.param(_with_fields(place_of_birth=None), ["place_of_birth"], id="missing-field"),
        pytest.param(
            _with_fields(child_full_name=None, parent_full_name=None),
            ["child_full_name", "parent_full_name"],
            id="two-missing-in-form-order",
        ),
        pytest.param(_with_fields(place_of_birth="   "), ["place_of_birth"], id="blank"),
        pytest.param(
            _with_fields(favourite_colour="red"), ["favourite_colour"], id="unknown-field"
        ),
        pytest.param(_with_fields(place_of_birth="X"), ["place_of_birth"], id="too-short"),
        pytest.param(_with_fields(place_of_birth="x" * 81), ["place_of_birth"], id="too-long"),
        pytest.param(_with_fields(child_full_name=42), ["child_full_name"], id="not-a-string"),
        pytest.param(
            _with_fields(child_date_of_birth="21/03/2019"), ["child_date_of_birth"], id="not-iso"
        ),
        pytest.param(
            _with_fields(child_date_of_birth="2019-02-30"),
            ["child_date_of_birth"],
            id="no-such-day",
        ),
        pytest.param(
            {"service_code": "pothole", "fields": {"location": "120 Bank St", "size": "huge"}},
            ["size"],
            id="not-a-choice",
        ),
        pytest.param({"fields": {}}, ["service_code"], id="no-service-code"),
    ],
)
def test_invalid_applications_get_field_errors(
    http: httpx.Client, database: Path, body: dict[str, Any], fields_in_error: list[str]
) -> None:
    response = file(http, "key-1", body)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == fields_in_error
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert count_applications(database) == 0


@pytest.mark.parametrize(
    ("children", "valid"), [("2", True), ("0", False), ("21", False), ("two", False), ("٣", False)]
)
def test_number_fields_are_whole_numbers_in_range(
    http: httpx.Client, children: str, valid: bool
) -> None:
    body = {
        "service_code": "child_benefit",
        "fields": {
            "parent_full_name": "Ana Lopez",
            "child_full_name": "Maria Lopez",
            "child_date_of_birth": "2019-03-21",
            "children_in_care": children,
        },
    }

    assert file(http, "key-1", body).status_code == (201 if valid else 422)


# --- reading -------------------------------------------------------------------------------------


def test_reading_an_application(http: httpx.Client) -> None:
    reference = file(http, "key-1").json()["reference"]

    response = http.get(f"/applications/{reference}", headers=GATEWAY)

    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == reference
    assert (body["stage"], body["note"]) == ("received", None)
    assert [h["stage"] for h in body["history"]] == ["received"]
    assert http.get(f"/applications/{reference.lower()}", headers=GATEWAY).status_code == 200


def test_reading_needs_the_api_key_and_a_known_reference(http: httpx.Client) -> None:
    reference = file(http, "key-1").json()["reference"]

    assert http.get(f"/applications/{reference}").status_code == 401
    assert http.get("/applications/BC-22222A", headers=GATEWAY).status_code == 404


# --- the clerk's side ----------------------------------------------------------------------------


def test_advancing_without_a_stage_follows_the_usual_path(http: httpx.Client) -> None:
    reference = file(http, "key-1").json()["reference"]

    stages = [advance(http, reference).json()["stage"] for _ in range(3)]

    assert stages == ["in_review", "approved", "ready_for_collection"]
    detail = http.get(f"/applications/{reference}", headers=GATEWAY).json()
    assert [h["stage"] for h in detail["history"]] == ["received", *stages]
    assert detail["updated_at"] == detail["history"][-1]["at"]
    assert advance(http, reference).status_code == 409  # ready_for_collection is final


def test_rejection_with_a_note(http: httpx.Client) -> None:
    reference = file(http, "key-1").json()["reference"]
    advance(http, reference)

    rejected = advance(http, reference, stage="rejected", note="Photo ID missing")

    assert rejected.status_code == 200
    assert (rejected.json()["stage"], rejected.json()["note"]) == ("rejected", "Photo ID missing")
    assert rejected.json()["history"][-1] == {
        "stage": "rejected",
        "at": rejected.json()["updated_at"],
        "note": "Photo ID missing",
    }
    assert advance(http, reference, stage="approved").status_code == 409


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ([], "approved"),
        ([], "rejected"),
        ([], "ready_for_collection"),
        ([], "received"),
        (["in_review"], "in_review"),
        (["in_review"], "ready_for_collection"),
        (["in_review", "approved"], "rejected"),
    ],
)
def test_invalid_transitions_conflict(http: httpx.Client, path: list[str], stage: str) -> None:
    reference = file(http, "key-1").json()["reference"]
    for step in path:
        assert advance(http, reference, stage=step).status_code == 200

    response = advance(http, reference, stage=stage)

    assert response.status_code == 409
    assert "cannot move" in response.json()["detail"]


def test_advance_refuses_unknown_stages_and_references(http: httpx.Client) -> None:
    reference = file(http, "key-1").json()["reference"]

    assert advance(http, reference, stage="archived").status_code == 422
    assert advance(http, "BC-22222A").status_code == 404


async def test_concurrent_advances_move_the_application_once(backend_url: str) -> None:
    async with httpx.AsyncClient(base_url=backend_url, timeout=20) as client:
        filed = await client.post(
            "/applications", headers={**GATEWAY, "Idempotency-Key": "k"}, json=BIRTH_CERTIFICATE
        )
        reference = filed.json()["reference"]
        url = f"/operator/applications/{reference}/advance"
        responses = await asyncio.gather(
            *(client.post(url, headers=OPERATOR, json={"stage": "in_review"}) for _ in range(6))
        )
        detail = await client.get(f"/applications/{reference}", headers=GATEWAY)

    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    assert [h["stage"] for h in detail.json()["history"]] == ["received", "in_review"]


@pytest.mark.parametrize("token", [None, "wrong", API_KEY])
def test_operator_endpoints_need_the_operator_token(http: httpx.Client, token: str | None) -> None:
    reference = file(http, "key-1").json()["reference"]
    headers = {} if token is None else {"X-Operator-Token": token}

    assert http.get("/operator/applications", headers=headers).status_code == 403
    url = f"/operator/applications/{reference}/advance"
    assert http.post(url, headers=headers, json={}).status_code == 403
    assert http.get(f"/applications/{reference}", headers=GATEWAY).json()["stage"] == "received"


def test_operator_list_is_newest_first(http: httpx.Client) -> None:
    references = [file(http, f"key-{n}").json()["reference"] for n in range(3)]

    listed = http.get("/operator/applications", headers=OPERATOR).json()

    assert [a["reference"] for a in listed] == references[::-1]
    assert http.get("/operator/applications?limit=1", headers=OPERATOR).json() == listed[:1]


# --- the store and references, below HTTP -------------------------------------------------------


def test_new_references_always_hold_a_digit_so_they_survive_a_missing_dash() -> None:
    for _ in range(500):
        reference = new_reference("BC")
        assert REFERENCE.match(reference)
        assert find_reference(reference.replace("-", "").lower()) == reference


def test_a_reference_clash_draws_another(database: Path) -> None:
    drawn = iter(["BC-22222A", "BC-22222A", "BC-33333B"])
    engine = create_engine(f"sqlite:///{database}")
    store = ApplicationStore(engine, make_reference=lambda prefix: next(drawn))
    store.create_tables()
    service = load_catalogue().get("birth_certificate")
    assert service is not None
    try:
        first = store.file(service, BIRTH_CERTIFICATE["fields"], "en", "key-1")
        second = store.file(service, BIRTH_CERTIFICATE["fields"], "en", "key-2")
    finally:
        engine.dispose()

    assert (first.application.reference, first.created) == ("BC-22222A", True)
    assert (second.application.reference, second.created) == ("BC-33333B", True)


def test_an_advance_that_loses_a_race_is_refused(database: Path) -> None:
    """Deterministic race: another clerk commits between our read and our write."""
    engine = create_engine(f"sqlite:///{database}")
    store = ApplicationStore(engine)
    store.create_tables()
    service = load_catalogue().get("birth_certificate")
    assert service is not None
    reference = store.file(service, BIRTH_CERTIFICATE["fields"], "en", "k").application.reference
    raced = False

    def other_clerk_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal raced
        if statement.startswith("UPDATE applications") and not raced:
            raced = True
            store.advance(reference, Stage.IN_REVIEW, "the other clerk")

    event.listen(engine, "before_cursor_execute", other_clerk_first)
    try:
        with pytest.raises(TransitionRefusedError):
            store.advance(reference, Stage.IN_REVIEW, "too late")
        history = store.get(reference).history
    finally:
        event.remove(engine, "before_cursor_execute", other_clerk_first)
        engine.dispose()

    assert raced
    assert [(h.stage, h.note) for h in history] == [
        (Stage.RECEIVED, None),
        (Stage.IN_REVIEW, "the other clerk"),
    ]


@pytest.mark.parametrize(("api_key", "operator_token"), [("", "op"), ("key", ""), ("same", "same")])
def test_create_app_refuses_weak_secrets(tmp_path: Path, api_key: str, operator_token: str) -> None:
    with pytest.raises(ValueError):
        create_app(f"sqlite:///{tmp_path / 'x.db'}", api_key, operator_token)


# --- the module entry point ----------------------------------------------------------------------


def test_secrets_come_from_the_environment() -> None:
    environ = {"REFERENCE_BACKEND_API_KEY": "k", "REFERENCE_BACKEND_OPERATOR_TOKEN": "o"}

    secrets = resolve_secrets(environ, dev=False)

    assert (secrets.api_key, secrets.operator_token) == ("k", "o")


def test_missing_secrets_stop_the_backend_unless_dev() -> None:
    with pytest.raises(SystemExit, match="REFERENCE_BACKEND_OPERATOR_TOKEN"):
        resolve_secrets({"REFERENCE_BACKEND_API_KEY": "k"}, dev=False)

    secrets = resolve_secrets({"REFERENCE_BACKEND_API_KEY": "k"}, dev=True)
    assert (secrets.api_key, secrets.operator_token) == (
        "k",
        DEV_SECRETS["REFERENCE_BACKEND_OPERATOR_TOKEN"],
    )


def test_sqlite_url_creates_the_directory(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "var" / "backend.db")

    assert (tmp_path / "var").is_dir()
    assert url == f"sqlite:///{tmp_path / 'var' / 'backend.db'}"


def test_python_dash_m_runs_the_backend(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service_connectors.reference_backend",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database",
        str(tmp_path / "var" / "reference_backend.db"),
        "--dev",
        "--log-level",
        "warning",
    ]
    environ = {"PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        dev_key = {"Authorization": f"Bearer {DEV_SECRETS['REFERENCE_BACKEND_API_KEY']}"}
        response = httpx.post(
            f"http://127.0.0.1:{port}/applications",
            headers={**dev_key, "Idempotency-Key": "key-1"},
            json=BIRTH_CERTIFICATE,
        )
        assert response.status_code == 201
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert (tmp_path / "var" / "reference_backend.db").is_file()


def test_without_dev_or_secrets_the_module_refuses_to_start(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "service_connectors.reference_backend", "--port", "1"]
    result = subprocess.run(
        command, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30
    )

    assert result.returncode != 0
    assert "REFERENCE_BACKEND_API_KEY" in result.stderr
