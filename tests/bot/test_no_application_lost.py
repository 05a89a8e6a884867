"""No application lost, none filed twice: a real gateway and the real reference backend
behind a front that fails on purpose (down, or accepting and then failing the answer),
a gateway restarted mid-retry, and the backend's signed stage webhooks (forged,
replayed, stale refused; a real change told once)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from service_connectors.reference_backend import create_app as create_backend
from service_connectors.webhook_signing import signed_headers
from support.db import as_datetime, execute, query, wait_until
from support.driver import ActionDriver
from support.servers import ThreadedServer, free_port, serve
from support.stack import (
    BACKEND_API_KEY,
    OPERATOR_TOKEN,
    advance,
    backend_id,
    gateway,
    gateway_settings,
)
from tests.bot.test_application_actions import fill_birth_certificate

WEBHOOK_SECRET = "test-backend-webhook-secret"
Asgi = Callable[..., Any]


class FlakyFront:
    """In front of the backend: 503 for the next ``down`` submissions, or, for the next
    ``lose_answers`` ones, the backend files them but the gateway only sees a 503. Counts
    the submissions made and those that reached the backend."""

    def __init__(self, app: Asgi) -> None:
        self.app, self.down, self.lose_answers, self.submissions = app, 0, 0, 0
        self.reached = 0

    async def __call__(self, scope: dict[str, Any], receive: Asgi, send: Asgi) -> None:
        submitting = scope["type"] == "http" and scope["method"] == "POST"
        if submitting and scope["path"] == "/applications":
            self.submissions += 1
            if self.down > 0:
                self.down -= 1
                return await _unavailable(send)
            self.reached += 1
            if self.lose_answers > 0:
                self.lose_answers -= 1

                async def swallow(_message: dict[str, Any]) -> None:
                    return None

                await self.app(scope, receive, swallow)
                return await _unavailable(send)
        await self.app(scope, receive, send)


async def _unavailable(send: Asgi) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b"down"})


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def front(tmp_path: Path, gateway_port: int) -> Iterator[tuple[FlakyFront, ThreadedServer]]:
    backend = create_backend(
        f"sqlite:///{tmp_path / 'backend.db'}",
        BACKEND_API_KEY,
        OPERATOR_TOKEN,
        webhook_url=f"http://127.0.0.1:{gateway_port}/connectors/reference/events",
        webhook_secret=WEBHOOK_SECRET,
    )
    flaky = FlakyFront(backend)
    with serve(flaky) as server:
        yield flaky, server


def start_gateway(tmp_path: Path, backend_url: str, port: int) -> Any:
    settings = gateway_settings(
        tmp_path,
        backend_url,
        submission_retry_base_seconds=0.2,
        connector_breaker_cooldown_seconds=0.5,
        worker_interval_seconds=0.2,
        backend_webhook_secret=WEBHOOK_SECRET,
    )
    return gateway(settings, port)


def backend_applications(tmp_path: Path) -> list[tuple[Any, ...]]:
    """What the department filed (its own SQLite database, whichever the gateway's is)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'backend.db'}", poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            sql = sa.text("SELECT reference, idempotency_key FROM applications ORDER BY id")
            return [tuple(row) for row in connection.execute(sql)]
    finally:
        engine.dispose()


def apply(server: ThreadedServer, tmp_path: Path, sender: str) -> str:
    driver = ActionDriver(server.url, tmp_path, sender)
    fill_birth_certificate(driver)
    return driver.texts("action_submit_application")


@pytest.mark.parametrize("failure", ["down", "lose_answers"])
def test_an_outage_loses_nothing_and_files_each_application_once(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer], gateway_port: int, failure: str
) -> None:
    flaky, backend = front
    # Failing until the three have applied (the worker's retries of the first ones would
    # use up a fixed number of failures at a speed that depends on the machine and the
    # database), then three more for the retries.
    setattr(flaky, failure, 1_000)
    with start_gateway(tmp_path, backend.url, gateway_port) as server:
        replies = [apply(server, tmp_path, f"citizen-{n}") for n in range(3)]
        setattr(flaky, failure, 3)
        assert all("provisional reference" in reply for reply in replies), replies
        filed_sql = "SELECT id FROM applications WHERE reference IS NOT NULL"
        wait_until(lambda: len(query(tmp_path, filed_sql)) == 3)
    filed = backend_applications(tmp_path)
    assert len(filed) == 3  # exactly once each, even when an answer was lost
    assert len({key for _, key in filed}) == 3
    rows = query(
        tmp_path, "SELECT reference, provisional_reference, backend_id, stage FROM applications"
    )
    assert all(r[0] == r[1] for r in rows)  # the citizen keeps ours
    assert sorted(r[2] for r in rows) == sorted(r[0] for r in filed)  # the backend's, beside
    assert {r[3] for r in rows} == {"received"}
    assert flaky.submissions >= 9  # 3 first attempts, 3 failed retries, 3 successes
    told = query(tmp_path, "SELECT text FROM messages WHERE text LIKE '%is now with%'")
    assert sorted(text for (text,) in told) == sorted(  # each citizen told once, ours
        f"Your application {r[0]} is now with the office. Reply STATUS {r[0]} to follow it."
        for r in rows
    )


def test_a_restart_mid_retry_still_files_once(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer], gateway_port: int
) -> None:
    flaky, backend = front
    flaky.down = 1_000
    with start_gateway(tmp_path, backend.url, gateway_port) as server:
        assert "provisional reference" in apply(server, tmp_path, "citizen")
        wait_until(lambda: flaky.submissions >= 3)
    assert backend_applications(tmp_path) == []
    flaky.down = 0
    with start_gateway(tmp_path, backend.url, gateway_port):
        wait_until(lambda: len(backend_applications(tmp_path)) == 1)
        time.sleep(1.0)  # several more worker rounds: nothing is filed again
    assert len(backend_applications(tmp_path)) == 1
    assert query(tmp_path, "SELECT stage FROM applications") == [("received",)]


def test_stage_webhooks_are_signed_fresh_and_taken_once(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer], gateway_port: int
) -> None:
    backend = front[1]
    with start_gateway(tmp_path, backend.url, gateway_port) as server:
        reply = apply(server, tmp_path, "citizen")
        [(reference, provisional)] = query(
            tmp_path, "SELECT reference, provisional_reference FROM applications"
        )
        assert reference == provisional and f"Your reference is {reference}." in reply
        theirs = backend_id(tmp_path, reference)  # the backend's own, which its events name
        assert theirs != reference
        url = f"{server.url}/connectors/reference/events"

        def post(event_id: str, stage: str, headers: dict[str, str], name: str = theirs) -> int:
            body = json.dumps({"event_id": event_id, "reference": name, "stage": stage})
            sent = httpx.post(url, content=body.encode(), headers=headers)
            return sent.status_code

        def signed(event_id: str, stage: str, **kw: Any) -> dict[str, str]:
            name = kw.get("name", theirs)
            body = json.dumps({"event_id": event_id, "reference": name, "stage": stage})
            return signed_headers(kw.get("secret", WEBHOOK_SECRET), body.encode(), kw.get("now"))

        assert post("e1", "approved", {}) == 403  # unsigned
        assert post("e1", "approved", signed("e1", "approved", secret="wrong")) == 403
        assert post("e1", "approved", signed("e1", "approved", now=time.time() - 900)) == 403
        assert post("e1", "approved", signed("e1", "in_review")) == 403  # body altered
        assert query(tmp_path, "SELECT stage FROM applications") == [("received",)]

        # An event naming our reference is not the backend's: no such application.
        assert post("e0", "approved", signed("e0", "approved", name=reference), reference) == 404
        advance(backend.url, theirs)  # the clerk moves it: the backend pushes, signed
        wait_until(lambda: query(tmp_path, "SELECT stage FROM applications") == [("in_review",)])
        headers = signed("e2", "approved")
        assert post("e2", "approved", headers) == 204
        assert post("e2", "approved", headers) == 409  # a replay within the window
        updates = query(
            tmp_path, "SELECT text FROM messages WHERE text LIKE 'Update:%' ORDER BY id"
        )
        assert [text for (text,) in updates] == [
            f"Update: Birth certificate {reference}: In review. An officer is checking your"
            " application. We will tell you when there is a decision.",
            f"Update: Birth certificate {reference}: Approved. Your application is approved."
            " We will tell you when it is ready.",
        ]


def test_an_application_filed_with_the_backend_s_reference_still_follows_its_events(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer], gateway_port: int
) -> None:
    """Filed before issue 24: the citizen was told the backend's own reference."""
    backend = front[1]
    with start_gateway(tmp_path, backend.url, gateway_port) as server:
        apply(server, tmp_path, "citizen")
        [(provisional, theirs)] = query(
            tmp_path, "SELECT provisional_reference, backend_id FROM applications"
        )
        assert execute(tmp_path, "UPDATE applications SET reference = backend_id") == 1

        advance(backend.url, theirs)
        wait_until(lambda: query(tmp_path, "SELECT stage FROM applications") == [("in_review",)])
        [(update,)] = query(tmp_path, "SELECT text FROM messages WHERE text LIKE 'Update:%'")
        assert update.startswith(f"Update: Birth certificate {theirs}: In review.")
        driver = ActionDriver.attach(server.url, tmp_path, "citizen")
        for typed in (theirs, provisional):  # STATUS finds it by either reference
            driver.slots, driver.active_loop = {}, "status_form"
            driver.user(f"STATUS {typed}", "check_status")
            assert driver.run("validate_status_form", "reference") == []
            assert driver.slots["reference"] == typed
            assert "In review" in driver.texts("action_check_status"), typed


def test_a_night_update_waits_for_the_morning_then_goes_once(
    tmp_path: Path, front: tuple[FlakyFront, ThreadedServer], gateway_port: int
) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from support.twilio_double import TwilioDouble, twilio_settings

    twilio = TwilioDouble()
    local = datetime.now(ZoneInfo("America/Toronto"))
    quiet = {  # quiet hours around "now", whatever time the suite runs
        "quiet_hours_start": (local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        "quiet_hours_end": (local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    }
    with serve(twilio.app()) as double:
        settings = gateway_settings(
            tmp_path,
            front[1].url,
            backend_webhook_secret=WEBHOOK_SECRET,
            **twilio_settings(double.url, "https://sms.example.org"),
            **quiet,
        )
        with gateway(settings, gateway_port) as server:
            apply(server, tmp_path, "citizen")
            [(reference, citizen)] = query(
                tmp_path, "SELECT reference, citizen_id FROM applications"
            )
            execute(  # the citizen's linked phone
                tmp_path,
                "INSERT INTO channel_identities (id, citizen_id, channel, external_id,"
                " created_at, last_seen_at) VALUES ('phone1', :citizen, 'sms', '+15145550111',"
                " :created, :created)",
                citizen=citizen,
                created=datetime(2026, 1, 1, tzinfo=UTC),
            )
            advance(front[1].url, backend_id(tmp_path, reference))
            wait_until(lambda: len(query(tmp_path, "SELECT id FROM deliveries")) == 1)
            [(due, status)] = query(tmp_path, "SELECT next_attempt_at, status FROM deliveries")
            morning = as_datetime(due)
            assert status == "queued"
            assert (
                morning.astimezone(ZoneInfo("America/Toronto")).time() == quiet["quiet_hours_end"]
            )
            time.sleep(1.0)  # several worker rounds: held
            assert twilio.bodies_to("+15145550111") == []
            past = datetime(2020, 1, 1, tzinfo=UTC)  # the morning comes
            execute(tmp_path, "UPDATE deliveries SET next_attempt_at = :past", past=past)
            [update] = twilio.wait_for("+15145550111", 1)
            assert update.startswith(f"Update: Birth certificate {reference}: In review.")
            time.sleep(0.6)
            assert len(twilio.bodies_to("+15145550111")) == 1
