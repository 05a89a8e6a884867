"""What operators see: ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``.

The gateway runs for real on loopback; messages go in through its webhooks, rows are
written to its database as other replicas would, and the scrape is parsed with
prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.submission import PENDING_SUBMISSION, SUBMITTING
from bot.db.models import (
    Application,
    ChannelIdentity,
    Citizen,
    Conversation,
    Delivery,
    DeliveryStatus,
    Handoff,
    HandoffKind,
    HandoffStatus,
    utcnow,
)
from bot.db.session import create_engine, session_factory
from bot.main import create_app
from bot.metrics import BreakerStates, GatewayMetrics
from bot.outbox import Outbox
from bot.settings import Settings
from bot.submissions import RETURNED
from channels.base import DeliveryError, OutputChannel
from service_connectors.base import CircuitBreaker
from support.servers import ThreadedServer, serve
from support.stack import gateway, gateway_settings, migrate

Series = dict[tuple[str, ...], float]
SENDER = "+15145550177"
APOLOGY = (
    "Sorry, I cannot answer right now. Your message is saved. Please try again in a few minutes."
)
KINDS = [kind.value for kind in HandoffKind]


def scrape(server: ThreadedServer) -> dict[str, Series]:
    """Every sample of ``/metrics`` by sample name, keyed by its label values in the
    order of the label names (``kind`` before ``team``, ``le`` before ``outcome``)."""
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert SENDER not in response.text  # no personal data in labels
    scraped: dict[str, Series] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(value for _name, value in sorted(sample.labels.items()))
            scraped.setdefault(sample.name, {})[key] = sample.value
    return scraped


def rest(server: ThreadedServer, message: str, message_id: str | None = None) -> Any:
    body = {"sender": SENDER, "message": message, "message_id": message_id}
    response = httpx.post(f"{server.url}/channels/rest/webhook", json=body)
    assert response.status_code == 200
    return response.json()


async def conversation(
    session: AsyncSession, number: int, channel: str = "webchat", **identity_values: Any
) -> Conversation:
    citizen = Citizen(language="en")
    session.add(citizen)
    await session.flush()
    identity = ChannelIdentity(
        citizen_id=citizen.id, channel=channel, external_id=f"{channel}-{number}", **identity_values
    )
    session.add(identity)
    await session.flush()
    found = Conversation(identity_id=identity.id, citizen_id=citizen.id, channel=channel)
    session.add(found)
    await session.flush()
    return found


async def write_backlog(settings: Settings, cookie: str) -> None:
    """Rows written straight to the gateway's database, as other replicas would: for the
    browser holding ``cookie`` and for four other conversations."""
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            browser = await session.scalar(
                select(Conversation)
                .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                .where(ChannelIdentity.channel == "webchat", ChannelIdentity.external_id == cookie)
            )
            assert browser is not None
            others = [await conversation(session, number) for number in range(4)]
            now = utcnow()
            session.add_all(
                [
                    delivery(browser, next_attempt_at=now - timedelta(seconds=5)),
                    delivery(browser, next_attempt_at=now - timedelta(seconds=1), attempts=1),
                    delivery(browser, next_attempt_at=now + timedelta(hours=1), attempts=2),
                    delivery(browser, status=DeliveryStatus.DELIVERED, attempts=1),
                    delivery(browser, status=DeliveryStatus.FAILED, attempts=5),
                    application(browser, PENDING_SUBMISSION, 1, next_attempt_at=now),
                    application(browser, SUBMITTING, 2),
                    application(browser, RETURNED, 3),
                    application(browser, "received", 4, reference="BC-2026-0004"),
                    application(browser, PENDING_SUBMISSION, 5, connector="open311"),
                    handoff(others[0], "general", HandoffKind.CHAT, HandoffStatus.QUEUED, 120),
                    handoff(others[1], "general", HandoffKind.CHAT, HandoffStatus.QUEUED, 30),
                    handoff(others[2], "permits", HandoffKind.CALLBACK, HandoffStatus.QUEUED, 600),
                    handoff(others[3], "general", HandoffKind.CHAT, HandoffStatus.CLAIMED, 900),
                    handoff(browser, "general", HandoffKind.CHAT, HandoffStatus.CLOSED, 5000),
                ]
            )
            await session.commit()
    finally:
        await engine.dispose()


def delivery(conversation: Conversation, **values: Any) -> Delivery:
    return Delivery(
        conversation_id=conversation.id,
        identity_id=conversation.identity_id,
        channel=conversation.channel,
        recipient="browser",
        body="A message said outside a turn.",
        **values,
    )


def application(conversation: Conversation, stage: str, number: int, **values: Any) -> Application:
    values.setdefault("connector", "reference")
    return Application(
        provisional_reference=f"BC-TEST-{number:04d}",
        service_code="birth_certificate",
        citizen_id=conversation.citizen_id,
        identity_id=conversation.identity_id,
        conversation_id=conversation.id,
        answers={},
        language="en",
        stage=stage,
        **values,
    )


def handoff(
    conversation: Conversation, team: str, kind: str, status: str, waited: float
) -> Handoff:
    return Handoff(
        conversation_id=conversation.id,
        citizen_id=conversation.citizen_id,
        channel="webchat",
        team=team,
        kind=kind,
        status=status,
        reason="asked",
        queued_at=utcnow() - timedelta(seconds=waited),
    )


@pytest.fixture
def settings(tmp_path: Path, backend: ThreadedServer) -> Settings:
    # No background rounds during the test: the rows written stay as they are.
    return gateway_settings(
        tmp_path,
        backend.url,
        worker_interval_seconds=3600,
        handoff_teams={"building_permit": "permits"},
    )


def test_messages_latencies_and_the_database_backlog(settings: Settings) -> None:
    with gateway(settings) as server:
        assert rest(server, "hello", "m-1") == [{"text": APOLOGY}]  # Rasa is down
        assert rest(server, "hello", "m-1") == []  # a repeated id: not stored again
        cookie = str(httpx.get(f"{server.url}/").cookies["civicgate_chat"])
        chat = httpx.Client(base_url=server.url, cookies={"civicgate_chat": cookie})
        with chat:
            posted = chat.post("/channels/webchat/messages", json={"message": "hello"})
            assert posted.json() == [{"text": APOLOGY}]

            scraped = scrape(server)
            assert scraped["civicgate_messages_received_total"] == {
                ("rest",): 1.0,
                ("webchat",): 1.0,
            }
            assert scraped["civicgate_messages_sent_total"] == {("rest",): 1.0, ("webchat",): 1.0}
            assert scraped["civicgate_nlu_request_duration_seconds_count"] == {
                ("ok",): 0.0,
                ("unavailable",): 2.0,  # the duplicate never reached the engine
            }
            assert scraped["civicgate_webhook_request_duration_seconds_count"] == {
                ("rest",): 2.0,
                ("webchat",): 1.0,  # POSTs only: the page and its script are not webhooks
            }
            assert scraped["civicgate_outbox_queued"] == {("rest",): 0.0, ("webchat",): 0.0}
            assert scraped["civicgate_submissions_pending"] == {("reference",): 0.0}
            assert scraped["civicgate_database_up"] == {(): 1.0}
            assert scraped["civicgate_connector_breaker_state"] == {
                ("reference", "closed"): 1.0,
                ("reference", "open"): 0.0,
                ("reference", "half_open"): 0.0,
            }
            assert scraped["civicgate_connector_breaker_consecutive_failures"] == {
                ("reference",): 0.0
            }

            asyncio.run(write_backlog(settings, cookie))

            scraped = scrape(server)
            assert scraped["civicgate_outbox_queued"] == {("rest",): 0.0, ("webchat",): 3.0}
            assert scraped["civicgate_outbox_due"] == {("rest",): 0.0, ("webchat",): 2.0}
            assert scraped["civicgate_outbox_retrying"] == {("rest",): 0.0, ("webchat",): 2.0}
            assert scraped["civicgate_submissions_pending"] == {
                ("open311",): 1.0,  # a connector no longer configured still shows
                ("reference",): 2.0,
            }
            assert scraped["civicgate_submissions_refused"] == {
                ("open311",): 0.0,
                ("reference",): 1.0,
            }
            expected = {(kind, team): 0.0 for team in ("general", "permits") for kind in KINDS}
            lengths = {**expected, ("chat", "general"): 2.0, ("callback", "permits"): 1.0}
            assert scraped["civicgate_handoff_queue_length"] == lengths
            waits = dict(scraped["civicgate_handoff_oldest_wait_seconds"])
            assert 120 <= waits.pop(("chat", "general")) < 180  # the older of the two
            assert 600 <= waits.pop(("callback", "permits")) < 660
            assert waits == {key: 0.0 for key in expected if lengths[key] == 0}

            collected = chat.get("/channels/webchat/messages").json()  # the browser looks
            assert collected == [{"text": "A message said outside a turn."}] * 2  # the due ones

        scraped = scrape(server)
        assert scraped["civicgate_outbox_queued"] == {("rest",): 0.0, ("webchat",): 1.0}
        assert scraped["civicgate_outbox_due"] == {("rest",): 0.0, ("webchat",): 0.0}
        assert scraped["civicgate_messages_sent_total"] == {("rest",): 1.0, ("webchat",): 3.0}
        assert scraped["civicgate_messages_received_total"] == {("rest",): 1.0, ("webchat",): 1.0}


def test_healthz_is_liveness_and_readyz_names_rasa(gateway_server: ThreadedServer) -> None:
    live = httpx.get(f"{gateway_server.url}/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = httpx.get(f"{gateway_server.url}/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "problems": {"rasa": "unreachable (ClientConnectorError)"},
    }


@pytest.fixture
def fake_rasa() -> Iterator[tuple[ThreadedServer, dict[str, Any]]]:
    """Rasa's two endpoints the gateway uses, answering what ``state`` says."""
    state: dict[str, Any] = {"status": {"model_file": "models/test.tar.gz"}}
    app = FastAPI()

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return dict(state["status"])

    @app.post("/webhooks/rest/webhook")
    async def webhook(body: dict[str, Any]) -> list[dict[str, str]]:
        return [{"recipient_id": body["sender"], "text": "Hello from the engine."}]

    with serve(app) as server:
        yield server, state


def test_ready_with_a_model_and_nlu_turns_timed(
    tmp_path: Path, backend: ThreadedServer, fake_rasa: tuple[ThreadedServer, dict[str, Any]]
) -> None:
    rasa, state = fake_rasa
    with gateway(gateway_settings(tmp_path, backend.url, rasa_url=rasa.url)) as server:
        ready = httpx.get(f"{server.url}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
        assert rest(server, "hello") == [{"text": "Hello from the engine."}]
        scraped = scrape(server)
        assert scraped["civicgate_nlu_request_duration_seconds_count"] == {
            ("ok",): 1.0,
            ("unavailable",): 0.0,
        }
        assert scraped["civicgate_nlu_request_duration_seconds_sum"][("ok",)] > 0
        assert scraped["civicgate_nlu_request_duration_seconds_bucket"][("+Inf", "ok")] == 1.0

        state["status"] = {"model_file": None}
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "problems": {"rasa": "no model loaded"}}


def test_a_database_outage_fails_readiness_not_liveness(
    tmp_path: Path, backend: ThreadedServer, fake_rasa: tuple[ThreadedServer, dict[str, Any]]
) -> None:
    rasa, _state = fake_rasa
    missing = f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'gateway.db'}"
    settings = gateway_settings(tmp_path, backend.url, rasa_url=rasa.url, database_url=missing)
    with serve(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "problems": {"database": "OperationalError"},
        }
        scraped = scrape(server)
        assert scraped["civicgate_database_up"] == {(): 0.0}
        assert "civicgate_outbox_queued" not in scraped  # no stale or invented backlog
        assert "civicgate_connector_breaker_state" in scraped


class _Connector:
    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker


def test_breaker_states_closed_open_half_open() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=lambda: now[0])
    states = BreakerStates({"open311": _Connector(breaker)})  # type: ignore[dict-item]

    def current() -> tuple[dict[str, float], float]:
        state, failures = states.collect()
        by_state = {sample.labels["state"]: sample.value for sample in state.samples}
        return by_state, failures.samples[0].value

    assert current() == ({"closed": 1.0, "open": 0.0, "half_open": 0.0}, 0.0)
    breaker.record(answered=False)
    assert current() == ({"closed": 1.0, "open": 0.0, "half_open": 0.0}, 1.0)
    breaker.record(answered=False)
    assert current() == ({"closed": 0.0, "open": 1.0, "half_open": 0.0}, 2.0)
    now[0] = 31.0
    assert current() == ({"closed": 0.0, "open": 0.0, "half_open": 1.0}, 2.0)
    breaker.record(answered=True)
    assert current() == ({"closed": 1.0, "open": 0.0, "half_open": 0.0}, 0.0)


def test_a_refused_filing_is_counted_and_leaves_the_pending_gauge(
    tmp_path: Path, backend: ThreadedServer
) -> None:
    async def pending_application(url: str) -> None:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                filed = await conversation(session, 1)
                # No answers: the reference backend refuses it (422 naming the fields).
                session.add(application(filed, PENDING_SUBMISSION, 1, next_attempt_at=utcnow()))
                await session.commit()
        finally:
            await engine.dispose()

    settings = gateway_settings(tmp_path, backend.url, worker_interval_seconds=0.2)
    with gateway(settings) as server:
        asyncio.run(pending_application(settings.database_url))
        deadline = time.monotonic() + 15
        scraped = scrape(server)
        while scraped["civicgate_submissions_refused"] != {("reference",): 1.0}:
            assert time.monotonic() < deadline, scraped["civicgate_submissions_refused"]
            time.sleep(0.1)
            scraped = scrape(server)
        assert scraped["civicgate_submissions_pending"] == {("reference",): 0.0}
        assert scraped["civicgate_submission_attempts_total"] == {("reference", "refused"): 1.0}


class Scripted(OutputChannel):
    """A provider answering each send as scripted: an id, or a :class:`DeliveryError`."""

    def __init__(self, *outcomes: str | DeliveryError) -> None:
        self.outcomes = list(outcomes)

    async def _deliver(self, recipient: str, body: str, keyboard: Any) -> str:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, DeliveryError):
            raise outcome
        return outcome


def test_outbox_outcomes_are_counted_by_channel(tmp_path: Path) -> None:
    url = gateway_settings(tmp_path, "http://127.0.0.1:9").database_url
    migrate(url)
    metrics = GatewayMetrics()

    async def run() -> None:
        engine = create_engine(url)
        sessions = session_factory(engine)
        try:
            async with sessions() as session:
                reachable = await conversation(session, 1, "sms")
                blocked = await conversation(session, 2, "sms", unreachable_at=utcnow())
                session.add_all(
                    [
                        delivery(reachable),  # taken by the provider
                        delivery(reachable),  # a rate limit: tried again later
                        delivery(reachable),  # an invalid number: failed for good
                        delivery(blocked),  # never sent
                    ]
                )
                await session.commit()
            outbox = Outbox(sessions, max_attempts=3, metrics=metrics)
            rate_limited = DeliveryError("429", retriable=True, code="20429")
            invalid = DeliveryError("invalid", retriable=False, code="21211")
            outbox.register("sms", Scripted("SM1", rate_limited, invalid))
            assert await outbox.send_due() == 1
            # The provider reports later that the one it took was not delivered.
            undelivered = DeliveryError("unknown", retriable=False, code="30005")
            assert await outbox.record_status("sms", "SM1", DeliveryStatus.UNDELIVERED, undelivered)
        finally:
            await engine.dispose()

    asyncio.run(run())

    def count(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    outcomes = {
        outcome: count("civicgate_outbox_deliveries_total", channel="sms", outcome=outcome)
        for outcome in ("sent", "retried", "failed", "suppressed")
    }
    assert outcomes == {"sent": 1.0, "retried": 1.0, "failed": 2.0, "suppressed": 1.0}
    assert count("civicgate_messages_sent_total", channel="sms") == 1.0
