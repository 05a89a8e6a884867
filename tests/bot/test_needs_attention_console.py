"""The supervisors' list of applications that need a person (issue 24), over HTTP.

The gateway runs for real on loopback with its background rounds held back (a long
worker interval), so each test sees exactly what a console action did to the row; the
applications are put in ``needs_attention`` directly, as the retry loop leaves them.
Supervisors and agents sign in through the login form (:class:`Console`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.attention import (
    ALERT_ACTION,
    NEEDS_ATTENTION_BY_CONNECTOR,
    OLDEST_FIRST,
    WAITING_SINCE_BEFORE,
    AttentionAlerts,
    back_to_retries,
)
from bot.console.attention import LIST_LIMIT
from bot.db.models import (
    Application,
    Base,
    ChannelIdentity,
    Citizen,
    Conversation,
    StaffRole,
    as_utc,
    utcnow,
)
from bot.settings import Settings
from support.db import as_json, execute, query
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings, gateways
from tests.bot.test_console_api import HTML, Console, add_staff, in_db, say
from tests.bot.test_query_plans import query_plan

ANSWERS = {
    "child_full_name": "Maria Lopez",
    "child_date_of_birth": "2019-03-21",
    "place_of_birth": "Ottawa",
    "parent_full_name": "Ana Lopez",
}
HELD_BACK = {"worker_interval_seconds": 3600, "needs_attention_alert_minutes": 100_000}
ROW = (
    "stage, next_attempt_at, submit_attempts, first_attempt_at, last_error_kind,"
    " last_error_status, last_error_excerpt, same_error_count, needs_attention_since,"
    " needs_attention_reason, answers, idempotency_key, lease_until"
)


@pytest.fixture
def settings(tmp_path: Path, backend: ThreadedServer) -> Settings:
    return gateway_settings(tmp_path, backend.url, office_hours="mon-sun 00:00-24:00", **HELD_BACK)


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with gateway(settings) as running:
        yield running


@pytest.fixture
def consoles(server: ThreadedServer) -> Iterator[Callable[..., Console]]:
    opened: list[Console] = []

    def open_console(url: str | None = None) -> Console:
        opened.append(Console(url or server.url))
        return opened[-1]

    yield open_console
    for console in opened:
        console.close()


def citizen_conversation(server: ThreadedServer, settings: Settings, sender: str) -> str:
    """A citizen who wrote on the REST channel; their conversation's id."""
    say(server, sender, "hello")

    async def work(session: AsyncSession) -> str:
        conversation = await session.scalar(
            select(Conversation)
            .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
            .where(ChannelIdentity.external_id == sender)
        )
        assert conversation is not None
        return conversation.id

    return in_db(settings, work)


def stuck(
    settings: Settings,
    conversation_id: str,
    reference: str,
    waited: timedelta,
    reason: str = "refused",
    status: int | None = 422,
    excerpt: str | None = "child_date_of_birth: not a valid date",
    attempts: int = 3,
    stage: str = "needs_attention",
    answers: dict[str, str] | None = None,
    backend_id: str | None = None,
) -> str:
    """An application as the retry loop leaves one the backend would not take."""

    async def work(session: AsyncSession) -> str:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        now = utcnow()
        application = Application(
            provisional_reference=reference,
            service_code="birth_certificate",
            connector="reference",
            citizen_id=conversation.citizen_id,
            identity_id=conversation.identity_id,
            conversation_id=conversation.id,
            answers=dict(answers or ANSWERS),
            language="en",
            stage=stage,
            submit_attempts=attempts,
            first_attempt_at=now - waited - timedelta(hours=1),
            last_error_kind="refused" if reason == "refused" else "transient",
            last_error_status=status,
            last_error_excerpt=excerpt,
            same_error_count=1,
            needs_attention_since=now - waited if stage == "needs_attention" else None,
            needs_attention_reason=reason if stage == "needs_attention" else None,
            backend_id=backend_id,
        )
        session.add(application)
        await session.flush()
        return application.id

    return in_db(settings, work)


def row(tmp_path: Path, application_id: str) -> dict[str, Any]:
    (found,) = query(tmp_path, f"SELECT {ROW} FROM applications WHERE id = :id", id=application_id)
    values = dict(zip([c.strip() for c in ROW.split(",")], found, strict=True))
    values["answers"] = as_json(values["answers"])
    return values


def audit(tmp_path: Path, *actions: str) -> list[tuple[Any, ...]]:
    rows = query(
        tmp_path,
        "SELECT action, staff_id, conversation_id, handoff_id, detail FROM audit_log"
        " WHERE action NOT IN ('login', 'open') ORDER BY id",
    )
    return [(a, s, c, h, as_json(d)) for a, s, c, h, d in rows if not actions or a in actions]


def close_to_now(moment: Any) -> bool:
    stamp = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return abs((as_utc(stamp) - utcnow()).total_seconds()) < 30


@pytest.fixture
def world(server: ThreadedServer, settings: Settings) -> dict[str, str]:
    """A supervisor, an agent of the general team, and one citizen's conversation."""
    return {
        "sue": add_staff(settings, "sue", StaffRole.SUPERVISOR, teams=()),
        "ana": add_staff(settings, "ana"),
        "conversation": citizen_conversation(server, settings, "+15145550140"),
    }


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_why_each_application_waits_oldest_first(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console]
) -> None:
    conversation = world["conversation"]
    newer = stuck(settings, conversation, "BC-NEWER2", timedelta(minutes=25), "attempts_cap",
                  status=None, excerpt=None, attempts=12)  # fmt: skip
    older = stuck(settings, conversation, "BC-OLDER2", timedelta(hours=3), status=422,
                  excerpt='<script>alert("x")</script> & more',
                  backend_id="zpn9b29p")  # fmt: skip
    stuck(settings, conversation, "BC-WAITS2", timedelta(0), stage="pending_submission")
    sue = consoles().sign_in("sue")

    listed = sue.get("/console/attention")
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    assert [r["id"] for r in rows] == [older, newer]
    first, second = rows
    assert {k: first[k] for k in ("reference", "backend_id", "service", "connector", "reason",
                                  "reason_label", "status", "excerpt", "attempts", "age")} == {
        "reference": "BC-OLDER2",
        "backend_id": "zpn9b29p",  # the office's number, shown beside ours: never the citizen's
        "service": "Birth certificate",
        "connector": "reference",
        "reason": "refused",
        "reason_label": "Refused by the office",
        "status": 422,
        "excerpt": '<script>alert("x")</script> & more',
        "attempts": 3,
        "age": "3 hours ago",
    }  # fmt: skip
    assert (second["reference"], second["reason_label"], second["status"]) == (
        "BC-NEWER2",
        "Too many attempts",
        None,
    )
    assert (second["excerpt"], second["attempts"], second["age"]) == (None, 12, "25 minutes ago")
    assert [(f["name"], f["value"]) for f in first["fields"]] == list(ANSWERS.items())

    page = sue.http.get("/console/attention", headers=HTML)
    assert page.status_code == 200
    html = page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in html
    assert "<script>alert" not in html
    assert html.index("BC-OLDER2") < html.index("BC-NEWER2")
    assert "BC-OLDER2 (office's number: zpn9b29p)" in html
    assert "BC-WAITS2" not in html
    assert "HTTP 422" in html and "No answer" in html and "25 minutes ago" in html
    assert 'href="/console/attention"' in html  # the supervisor's menu has it


def test_an_agent_without_the_supervisor_role_gets_403(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console], tmp_path: Path
) -> None:
    application = stuck(settings, world["conversation"], "BC-AGENT2", timedelta(hours=1))
    before = row(tmp_path, application)
    ana = consoles().sign_in("ana")
    assert 'href="/console/attention"' not in ana.http.get("/console", headers=HTML).text
    refused = {"detail": "Only supervisors can see the applications that need attention."}
    for response in (
        ana.get("/console/attention"),
        ana.http.get("/console/attention", headers=HTML),
        ana.act(f"/console/attention/{application}/retry"),
        ana.act(f"/console/attention/{application}/resend", **{"answer.place_of_birth": "Hull"}),
        ana.act(f"/console/attention/{application}/contact"),
    ):
        assert (response.status_code, response.json()) == (403, refused)
    with httpx.Client(base_url=ana.http.base_url, follow_redirects=False) as stranger:
        page = stranger.get("/console/attention", headers=HTML)
        assert (page.status_code, page.headers["location"]) == (303, "/console/login")
        for action in ("retry", "resend", "contact"):
            response = stranger.post(
                f"/console/attention/{application}/{action}", data={"csrf_token": "x"}
            )
            assert (response.status_code, response.json()) == (401, {"detail": "sign in first"})
    assert row(tmp_path, application) == before
    assert audit(tmp_path) == []
    assert query(tmp_path, "SELECT count(*) FROM handoffs") == [(0,)]


def test_a_supervisor_s_action_needs_the_csrf_token(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console], tmp_path: Path
) -> None:
    application = stuck(settings, world["conversation"], "BC-CSRF22", timedelta(hours=1))
    before = row(tmp_path, application)
    sue = consoles().sign_in("sue")
    for action in ("retry", "resend", "contact"):
        response = sue.http.post(
            f"/console/attention/{application}/{action}",
            data={"csrf_token": "wrong"},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 403, action
    assert row(tmp_path, application) == before
    assert audit(tmp_path) == []


# --- the actions ---------------------------------------------------------------------------


def test_retry_sends_it_back_to_the_retry_loop_once(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console], tmp_path: Path
) -> None:
    application = stuck(settings, world["conversation"], "BC-RETRY2", timedelta(hours=2),
                        "attempts_cap", status=503, excerpt="Unavailable", attempts=12)  # fmt: skip
    key = row(tmp_path, application)["idempotency_key"]
    sue = consoles().sign_in("sue")

    done = sue.act(f"/console/attention/{application}/retry")
    assert (done.status_code, done.json()) == (
        200,
        {"ok": True, "notice": "Application BC-RETRY2 is back with the retries."},
    )
    after = row(tmp_path, application)
    assert close_to_now(after.pop("next_attempt_at"))
    assert after == {
        "stage": "pending_submission",
        "submit_attempts": 0,
        "first_attempt_at": None,
        "last_error_kind": None,
        "last_error_status": None,
        "last_error_excerpt": None,
        "same_error_count": 0,
        "needs_attention_since": None,
        "needs_attention_reason": None,
        "answers": ANSWERS,
        "idempotency_key": key,  # the same submission: a backend that got it answers once
        "lease_until": None,
    }
    assert audit(tmp_path) == [
        ("attention_retry", world["sue"], world["conversation"], None,
         {"application": application, "reason": "attempts_cap", "attempts": 12}),
    ]  # fmt: skip
    assert sue.get("/console/attention").json() == []

    again = sue.act(f"/console/attention/{application}/retry")
    assert (again.status_code, again.json()) == (
        409,
        {"error": "Someone else has already dealt with this application."},
    )
    assert len(audit(tmp_path)) == 1
    assert sue.act("/console/attention/nosuchapplication/retry").status_code == 404

    # The form posts and comes back to the list with the outcome.
    other = stuck(settings, world["conversation"], "BC-RETRY3", timedelta(hours=1))
    posted = sue.http.post(f"/console/attention/{other}/retry", data={"csrf_token": sue.csrf})
    assert posted.status_code == 303
    assert posted.headers["location"] == (
        "/console/attention?notice=Application%20BC-RETRY3%20is%20back%20with%20the%20retries."
    )


def test_edit_and_resend_checks_every_answer_as_the_form_does(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console], tmp_path: Path
) -> None:
    application = stuck(settings, world["conversation"], "BC-EDIT22", timedelta(hours=1))
    before = row(tmp_path, application)
    sue = consoles().sign_in("sue")
    path = f"/console/attention/{application}/resend"

    bad = sue.act(
        path,
        **{
            "answer.child_full_name": "M4ria",
            "answer.child_date_of_birth": "31/12/2999",
            "answer.place_of_birth": "",
        },
    )
    assert (bad.status_code, bad.json()) == (
        422,
        {
            "errors": {
                "child_full_name": "A name should only have letters.",
                "child_date_of_birth": "That date is in the future.",
                "place_of_birth": "I did not get an answer.",
            }
        },
    )
    form = {"answer.child_full_name": "M4ria", "csrf_token": sue.csrf}
    posted = sue.http.post(path, data=form)  # the page's form: back to the list, told why
    assert posted.status_code == 303
    assert posted.headers["location"] == "/console/attention?error=" + quote(
        "Child's full name: A name should only have letters.", safe=""
    )
    assert row(tmp_path, application) == before
    assert audit(tmp_path) == []

    good = sue.act(
        path,
        **{
            "answer.child_date_of_birth": "21 March 2018",
            "answer.place_of_birth": "  Gatineau ",
            "answer.parent_full_name": "Ana Lopez",
            "answer.unknown_field": "ignored",
        },
    )
    assert (good.status_code, good.json()) == (
        200,
        {"ok": True, "notice": "Application BC-EDIT22 was corrected and is back with the retries."},
    )
    after = row(tmp_path, application)
    assert after["stage"] == "pending_submission"
    assert close_to_now(after["next_attempt_at"])
    assert after["answers"] == {  # normalised as the form stores them; the name kept
        "child_full_name": "Maria Lopez",
        "child_date_of_birth": "2018-03-21",
        "place_of_birth": "Gatineau",
        "parent_full_name": "Ana Lopez",
    }
    # The backend refused the old one: nothing was filed under its key, a new one is sent.
    assert after["idempotency_key"] != before["idempotency_key"]
    assert (after["last_error_kind"], after["needs_attention_since"]) == (None, None)
    assert audit(tmp_path) == [
        ("attention_resend", world["sue"], world["conversation"], None,
         {"application": application, "reason": "refused", "attempts": 3,
          "changed": ["child_date_of_birth", "place_of_birth"], "new_idempotency_key": True}),
    ]  # fmt: skip
    again = sue.act(path, **{"answer.place_of_birth": "Hull"})
    assert again.status_code == 409
    assert row(tmp_path, application)["answers"]["place_of_birth"] == "Gatineau"


def test_contact_the_citizen_queues_a_handoff_whose_agent_sees_the_answers(
    settings: Settings, world: dict[str, str], consoles: Callable[..., Console], tmp_path: Path
) -> None:
    application = stuck(settings, world["conversation"], "BC-CALL22", timedelta(hours=1),
                        status=400, excerpt="parent_full_name: unknown parent")  # fmt: skip
    before = row(tmp_path, application)
    sue = consoles().sign_in("sue")
    ana = consoles().sign_in("ana")

    done = sue.act(f"/console/attention/{application}/contact")
    assert done.status_code == 200, done.text
    body = done.json()
    handoff = body.pop("handoff")
    assert body == {
        "ok": True,
        "notice": "Application BC-CALL22: the citizen is in the general queue for an agent.",
    }
    assert query(
        tmp_path,
        "SELECT status, kind, team, reason, conversation_id, agent_id FROM handoffs",
    ) == [("queued", "agent", "general", "needs_attention", world["conversation"], None)]
    assert row(tmp_path, application) == before  # it stays on the list until retried

    assert [r["id"] for r in ana.queue()] == [handoff]
    view = ana.get(f"/console/handoffs/{handoff}").json()
    assert [(n["author"], n["text"]) for n in view["notes"]] == [
        (
            "Sue",
            "Application BC-CALL22 (Birth certificate) needs attention: Refused by the office."
            " The office answered: HTTP 400 — parent_full_name: unknown parent.\n"
            "The citizen's answers:\n"
            "Child's full name: Maria Lopez\n"
            "Child's date of birth: 2019-03-21\n"
            "Place of birth: Ottawa\n"
            "Parent's full name: Ana Lopez",
        )
    ]
    assert audit(tmp_path, "attention_contact") == [
        ("attention_contact", world["sue"], world["conversation"], handoff,
         {"application": application, "reason": "refused", "attempts": 3, "new_handoff": True}),
    ]  # fmt: skip

    again = sue.act(f"/console/attention/{application}/contact")
    assert (again.status_code, again.json()) == (
        409,
        {"error": "This citizen is already in the queue about this application."},
    )
    assert query(tmp_path, "SELECT count(*) FROM handoffs") == [(1,)]
    assert query(tmp_path, "SELECT count(*) FROM handoff_notes") == [(1,)]

    # Then the supervisor sends it back to the retries: off the list, the handoff stays.
    assert sue.act(f"/console/attention/{application}/retry").status_code == 200
    assert sue.act(f"/console/attention/{application}/contact").status_code == 409
    assert [r["id"] for r in ana.queue()] == [handoff]


# --- two supervisors at once, on two replicas ------------------------------------------------


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Every call started together (a barrier), as two people clicking the same button."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def test_two_supervisors_clicking_at_once_on_two_replicas_act_once(
    settings: Settings, world: dict[str, str], tmp_path: Path
) -> None:
    add_staff(settings, "tom", StaffRole.SUPERVISOR, teams=())
    with gateways(settings, 2) as (first, second):
        sue, tom = Console(first.url).sign_in("sue"), Console(second.url).sign_in("tom")
        try:
            for action, form in (
                ("retry", {}),
                ("resend", {"answer.place_of_birth": "Gatineau"}),
                ("contact", {}),
            ):
                application = stuck(
                    settings, world["conversation"], f"BC-{action.upper()[:4]}2X", timedelta(1)
                )
                path = f"/console/attention/{application}/{action}"
                responses = at_once([lambda c=c, p=path, f=form: c.act(p, **f) for c in (sue, tom)])
                codes = sorted(r.status_code for r in responses)
                assert codes == [200, 409], (action, [r.text for r in responses])
                audited = audit(tmp_path, f"attention_{action}")
                assert [d["application"] for *_, d in audited] == [application], action
                if action != "contact":
                    assert row(tmp_path, application)["stage"] == "pending_submission"
                    execute(tmp_path, "DELETE FROM audit_log WHERE action = :a", a=audited[0][0])
            assert query(tmp_path, "SELECT count(*) FROM handoffs") == [(1,)]
            assert query(tmp_path, "SELECT count(*) FROM handoff_notes") == [(1,)]
        finally:
            sue.close()
            tom.close()


def test_the_retry_transition_moves_a_row_once(settings: Settings, world: dict[str, str]) -> None:
    """What the other actions build on, for reuse: only from needs_attention, once."""
    application = stuck(settings, world["conversation"], "BC-ONCE22", timedelta(hours=1))
    now = utcnow()

    async def twice(session: AsyncSession) -> list[bool]:
        return [await back_to_retries(session, application, now) for _ in range(2)]

    assert in_db(settings, twice) == [True, False]


# --- the alert and the figures --------------------------------------------------------------


async def add_citizen(session: AsyncSession) -> Conversation:
    citizen = Citizen(language="en")
    session.add(citizen)
    await session.flush()
    identity = ChannelIdentity(citizen_id=citizen.id, channel="rest", external_id="+15145550150")
    session.add(identity)
    await session.flush()
    conversation = Conversation(identity_id=identity.id, citizen_id=citizen.id, channel="rest")
    session.add(conversation)
    await session.flush()
    return conversation


async def test_an_application_waiting_too_long_is_alerted_once_by_two_replicas(
    sessions: async_sessionmaker[AsyncSession], database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    async with sessions() as session:
        conversation = await add_citizen(session)
        ids = []
        for reference, waited in (("BC-LATE22", 90), ("BC-SOON22", 30)):
            application = Application(
                provisional_reference=reference,
                service_code="birth_certificate",
                connector="reference",
                citizen_id=conversation.citizen_id,
                identity_id=conversation.identity_id,
                conversation_id=conversation.id,
                answers=dict(ANSWERS),
                language="en",
                stage="needs_attention",
                needs_attention_since=now - timedelta(minutes=waited),
                needs_attention_reason="time_cap",
            )
            session.add(application)
            await session.flush()
            ids.append(application.id)
        await session.commit()
    late, _soon = ids
    replicas = [AttentionAlerts(sessions, timedelta(minutes=60)) for _ in range(2)]

    with caplog.at_level(logging.ERROR, logger="bot.attention"):
        counts = await asyncio.gather(*(replica.run_due(now) for replica in replicas))
        assert sorted(counts) == [0, 1]
        assert [await replica.run_due(now) for replica in replicas] == [0, 0]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "ERROR",
            f"application {late} has needed attention for 90 minutes"
            " (connector reference, reason time_cap)",
        )
    ]
    for personal in ("Maria", "Lopez", "BC-LATE22", "+1514"):
        assert personal not in caplog.text
    rows = query(database, "SELECT action, staff_id, detail FROM audit_log")
    assert [(a, s, as_json(d)) for a, s, d in rows] == [
        (
            ALERT_ACTION,
            None,
            {
                "application": late,
                "since": as_utc(now - timedelta(minutes=90)).isoformat(),
                "connector": "reference",
                "reason": "time_cap",
            },
        )
    ]

    # Sent back and stuck again: a new stay, alerted again (once).
    async with sessions() as session:
        assert await back_to_retries(session, late, now)
        again = await session.get(Application, late)
        assert again is not None
        again.stage, again.needs_attention_reason = "needs_attention", "attempts_cap"
        again.needs_attention_since = now - timedelta(minutes=61)
        await session.commit()
    assert await replicas[0].run_due(now) == 1
    assert await replicas[1].run_due(now) == 0
    assert query(database, "SELECT count(*) FROM audit_log") == [(2,)]


def test_metrics_report_how_many_wait_and_the_oldest_age_per_connector(
    server: ThreadedServer, settings: Settings, world: dict[str, str]
) -> None:
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'civicgate_needs_attention_applications{connector="reference"} 0.0' in metrics
    assert 'civicgate_needs_attention_oldest_age_seconds{connector="reference"} 0.0' in metrics

    stuck(settings, world["conversation"], "BC-METR22", timedelta(hours=2))
    stuck(settings, world["conversation"], "BC-METR33", timedelta(minutes=5))
    stuck(settings, world["conversation"], "BC-METR44", timedelta(0), stage="pending_submission")
    lines = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in httpx.get(f"{server.url}/metrics").text.splitlines()
        if line.startswith("civicgate_needs_attention_")
    }
    assert lines['civicgate_needs_attention_applications{connector="reference"}'] == 2.0
    oldest = lines['civicgate_needs_attention_oldest_age_seconds{connector="reference"}']
    assert 7200 <= oldest < 7200 + 60


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN
@pytest.mark.parametrize(
    "statement",
    [OLDEST_FIRST.limit(LIST_LIMIT), WAITING_SINCE_BEFORE, NEEDS_ATTENTION_BY_CONNECTOR],
    ids=["the list", "the alert pass", "the metrics"],
)
def test_every_read_of_them_uses_the_partial_index(statement: sa.Select[Any]) -> None:
    engine = sa.create_engine("sqlite://")
    try:
        Base.metadata.create_all(engine)
        plan = query_plan(engine, statement)
    finally:
        engine.dispose()
    assert "ix_applications_needs_attention" in plan[0], plan
