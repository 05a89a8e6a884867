"""The call-centre console over HTTP, and the citizen's side of a handoff.

The gateway runs for real on loopback (Rasa is down: any message that reaches "the bot"
gets the engine-down apology, which is how these tests tell the bot's silence from its
answer). Staff accounts are created in the database; agents sign in through the login
form like a browser and act with ``Accept: application/json``. The office-hours routing
is driven directly on :class:`bot.handoff.Handoffs` with a fixed clock.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console.auth import SESSION_COOKIE
from bot.console.desk import CONTINUE_BY_TEXT
from bot.console.security import SESSION_LIFETIME, create_staff, open_session
from bot.conversation import ENGINE_DOWN_MESSAGE, choose_option
from bot.db.models import (
    ChannelIdentity,
    Citizen,
    Conversation,
    Direction,
    Handoff,
    HandoffKind,
    HandoffStatus,
    Message,
    StaffMember,
    StaffRole,
    as_utc,
    utcnow,
)
from bot.db.session import create_engine, session_factory
from bot.handoff import (
    BACK_TO_BOT,
    CALL_ME_BACK,
    CHOICE_BOT,
    CHOICE_CALLBACK,
    CHOICE_MESSAGE,
    LEAVE_MESSAGE,
    Handoffs,
)
from bot.i18n import localizer
from bot.office_hours import OfficeHours
from bot.settings import Settings
from channels.base import OutgoingMessage
from support.db import as_json, query
from support.driver import ActionDriver
from support.servers import ThreadedServer, serve
from support.stack import gateway, gateway_settings

T = TypeVar("T")

PASSWORD = "a long console password"
ALWAYS_OPEN = "mon-sun 00:00-24:00"
WEEKDAYS = "mon-fri 08:00-18:00"
TORONTO = ZoneInfo("America/Toronto")
CITIZEN = "+15145550100"  # the REST sender id the ActionDriver writes as
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
APOLOGY = ENGINE_DOWN_MESSAGE


# --- the gateway, its database and staff accounts ----------------------------------------


@pytest.fixture
def settings(tmp_path: Path, backend: ThreadedServer) -> Settings:
    return gateway_settings(tmp_path, backend.url, office_hours=ALWAYS_OPEN)


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with gateway(settings) as running:
        yield running


def in_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the gateway's database."""

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def add_staff(
    settings: Settings,
    username: str,
    role: StaffRole = StaffRole.AGENT,
    teams: tuple[str, ...] = ("general",),
) -> str:
    async def work(session: AsyncSession) -> str:
        staff = await create_staff(session, username, username.title(), PASSWORD, role, teams)
        return staff.id

    return in_db(settings, work)


def say(server: ThreadedServer, sender: str, text: str) -> list[dict[str, Any]]:
    """A citizen's message on the REST channel; the replies it gets right away."""
    response = httpx.post(
        f"{server.url}/channels/rest/webhook", json={"sender": sender, "message": text}
    )
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()
    return replies


def queued_handoff(server: ThreadedServer, settings: Settings, sender: str, team: str) -> str:
    """A citizen on the REST channel with a live chat waiting in ``team``'s queue."""
    assert [r["text"] for r in say(server, sender, "hello")] == [APOLOGY]

    async def work(session: AsyncSession) -> str:
        identity = await session.scalar(
            select(ChannelIdentity).where(ChannelIdentity.external_id == sender)
        )
        assert identity is not None
        conversation = await session.scalar(
            select(Conversation).where(Conversation.identity_id == identity.id)
        )
        assert conversation is not None
        handoff = Handoff(
            conversation_id=conversation.id,
            citizen_id=conversation.citizen_id,
            channel=conversation.channel,
            team=team,
            kind=HandoffKind.CHAT,
            status=HandoffStatus.QUEUED,
            reason="asked",
        )
        session.add(handoff)
        await session.flush()
        return handoff.id

    return in_db(settings, work)


class Console:
    """A staff member's browser: the login form, the session cookie, the CSRF token."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=15)
        self.csrf = ""

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = self.http.get("/console/login")
        assert form.status_code == 200
        token = CSRF_FIELD.search(form.text)
        assert token is not None
        return self.http.post(
            "/console/login",
            data={"username": username, "password": password, "csrf_token": token[1]},
        )

    def sign_in(self, username: str) -> Console:
        """Log in and open the queue page (which also marks the agent online)."""
        response = self.login(username)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/console"
        page = self.http.get("/console", headers=HTML)
        assert page.status_code == 200
        token = CSRF_FIELD.search(page.text)
        assert token is not None
        self.csrf = token[1]
        return self

    @property
    def token(self) -> str:
        return str(self.http.cookies[SESSION_COOKIE])

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=JSON)

    def act(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(path, data={**form, "csrf_token": self.csrf}, headers=JSON)

    def queue(self) -> list[dict[str, Any]]:
        response = self.get("/console/api/queue")
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def consoles(server: ThreadedServer) -> Iterator[Callable[[], Console]]:
    opened: list[Console] = []

    def open_console() -> Console:
        opened.append(Console(server.url))
        return opened[-1]

    yield open_console
    for console in opened:
        console.close()


def audit_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    return query(tmp_path, "SELECT action, staff_id, handoff_id FROM audit_log ORDER BY id")


def handoff_row(tmp_path: Path, handoff_id: str) -> dict[str, Any]:
    columns = ("status", "kind", "team", "agent_id", "outcome", "feedback_score", "reason")
    sql = f"SELECT {', '.join(columns)} FROM handoffs WHERE id = :id"
    (row,) = query(tmp_path, sql, id=handoff_id)
    return dict(zip(columns, row, strict=True))


def last_outbound_text(tmp_path: Path) -> str:
    """The text of the latest message to the citizen (the bot's or an agent's)."""
    ((text,),) = query(
        tmp_path, "SELECT text FROM messages WHERE direction = 'OUTBOUND' ORDER BY id DESC LIMIT 1"
    )
    return str(text)


def protected_requests(handoff_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """Every console page, API and action (the login form itself aside)."""
    page = f"/console/handoffs/{handoff_id}"
    return [
        ("GET", "/console", {}),
        ("GET", "/console/api/queue", {}),
        ("GET", page, {}),
        ("GET", f"/console/api/handoffs/{handoff_id}/messages?after=0", {}),
        ("GET", "/console/continue", {}),
        ("GET", "/console/events", {}),
        ("POST", f"{page}/claim", {}),
        ("POST", f"{page}/reply", {"text": "Hello from the city"}),
        ("POST", f"{page}/note", {"text": "internal"}),
        ("POST", f"{page}/transfer", {"to_team": "permits"}),
        ("POST", f"{page}/hand-back", {}),
        ("POST", f"{page}/close", {"outcome": "resolved"}),
        ("POST", f"{page}/file", {}),
        ("POST", f"{page}/status", {"application_id": "x"}),
        ("POST", "/console/continue", {"phone": "514 555 0199", "language": "fr"}),
        ("POST", "/console/logout", {}),
    ]


def assert_nothing_changed(tmp_path: Path, handoff_id: str, audit_actions: set[str]) -> None:
    assert handoff_row(tmp_path, handoff_id)["status"] == "queued"
    assert handoff_row(tmp_path, handoff_id)["agent_id"] is None
    assert handoff_row(tmp_path, handoff_id)["team"] == "general"
    assert query(tmp_path, "SELECT count(*) FROM handoff_notes") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM messages WHERE staff_id IS NOT NULL") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM deliveries") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM handoffs") == [(1,)]
    assert query(
        tmp_path, "SELECT count(*) FROM channel_identities WHERE external_id = '+15145550199'"
    ) == [(0,)]
    assert {action for action, _, _ in audit_rows(tmp_path)} == audit_actions


# --- 1. no access without a session, no action without its CSRF token -------------------


def test_nothing_in_the_console_answers_without_a_valid_session(
    server: ThreadedServer, settings: Settings, tmp_path: Path
) -> None:
    staff_id = add_staff(settings, "alice")
    handoff_id = queued_handoff(server, settings, "+15145550111", "general")

    async def expired_session(session: AsyncSession) -> str:
        member = await session.get(StaffMember, staff_id)
        assert member is not None
        started = utcnow() - SESSION_LIFETIME - timedelta(minutes=1)
        return await open_session(session, member, started)

    cookies = {
        "none": None,
        "forged": secrets.token_urlsafe(32),
        "expired": in_db(settings, expired_session),
    }
    with httpx.Client(base_url=server.url, follow_redirects=False) as http:
        for cookie_name, token in cookies.items():
            cookie = {"Cookie": f"{SESSION_COOKIE}={token}"} if token else {}
            for method, path, form in protected_requests(handoff_id):
                case = f"{cookie_name} cookie: {method} {path}"
                for accept in (HTML, JSON):
                    headers = {**cookie, **accept}
                    if method == "GET":
                        response = http.get(path, headers=headers)
                    else:
                        data = {**form, "csrf_token": "anything"}
                        response = http.post(path, data=data, headers=headers)
                    if method == "GET" and accept is HTML:
                        assert response.status_code == 303, case
                        assert response.headers["location"] == "/console/login", case
                    else:
                        assert response.status_code == 401, case
                        assert response.json() == {"detail": "sign in first"}, case
    assert_nothing_changed(tmp_path, handoff_id, audit_actions=set())
    assert query(tmp_path, "SELECT count(*) FROM staff_sessions") == [(1,)]  # the expired one


def test_every_action_needs_the_session_s_csrf_token(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    add_staff(settings, "alice")
    add_staff(settings, "bruno")
    handoff_id = queued_handoff(server, settings, "+15145550111", "general")
    alice = consoles().sign_in("alice")
    bruno = consoles().sign_in("bruno")
    assert alice.csrf != bruno.csrf
    forgeries: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "no token": ({}, {}),
        "empty token": ({"csrf_token": ""}, {}),
        "wrong form token": ({"csrf_token": "not-the-token"}, {}),
        "wrong header token": ({}, {"X-CSRF-Token": "not-the-token"}),
        "another session's token": ({"csrf_token": bruno.csrf}, {}),
    }
    for method, path, form in protected_requests(handoff_id):
        if method != "POST":
            continue
        for name, (token_field, token_header) in forgeries.items():
            response = alice.http.post(
                path, data={**form, **token_field}, headers={**JSON, **token_header}
            )
            assert response.status_code == 403, f"{name}: POST {path}"
            assert response.json() == {"detail": "CSRF token missing or wrong"}
    assert_nothing_changed(tmp_path, handoff_id, audit_actions={"login"})
    assert alice.get("/console/api/queue").status_code == 200  # logout was refused too
    # The same request with the right token (here as the header) goes through.
    response = alice.http.post(
        f"/console/handoffs/{handoff_id}/claim", headers={**JSON, "X-CSRF-Token": alice.csrf}
    )
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    assert handoff_row(tmp_path, handoff_id)["status"] == "claimed"


@pytest.mark.parametrize(
    ("login_cookie", "form_token"),
    [
        pytest.param(True, "not-the-form-token", id="wrong-token"),
        pytest.param(True, "", id="no-token"),
        pytest.param(False, "a-token-without-its-cookie", id="no-cookie"),
    ],
)
def test_the_login_form_needs_its_own_csrf_token(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
    login_cookie: bool,
    form_token: str,
) -> None:
    add_staff(settings, "alice")
    console = consoles()
    if login_cookie:
        assert console.http.get("/console/login").status_code == 200
    response = console.http.post(
        "/console/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": form_token},
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in console.http.cookies
    assert query(tmp_path, "SELECT count(*) FROM staff_sessions") == [(0,)]
    assert query(tmp_path, "SELECT failed_logins FROM staff") == [(0,)]
    assert audit_rows(tmp_path) == []


# --- 2. logging in and out --------------------------------------------------------------


def test_a_wrong_password_is_refused_and_audited(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    add_staff(settings, "alice")
    console = consoles()
    response = console.login("alice", "not the password at all")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert SESSION_COOKIE not in console.http.cookies
    assert query(
        tmp_path, "SELECT action, client_address, detail ->> 'username' FROM audit_log"
    ) == [("login_failed", "127.0.0.1", "alice")]
    assert query(tmp_path, "SELECT failed_logins FROM staff") == [(1,)]
    # An unknown account gets the very same answer.
    response = console.login("nobody", PASSWORD)
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    add_staff(settings, "alice")
    console = consoles()
    codes = [console.login("alice", f"wrong password {n}").status_code for n in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    response = console.login("alice", PASSWORD)
    assert response.status_code == 429
    assert "locked" in response.text
    assert SESSION_COOKIE not in console.http.cookies
    assert query(tmp_path, "SELECT count(*) FROM staff_sessions") == [(0,)]
    assert query(tmp_path, "SELECT locked_until IS NOT NULL FROM staff") == [(1,)]
    actions = [action for action, _, _ in audit_rows(tmp_path)]
    assert actions == ["login_failed"] * 4 + ["login_locked"] * 2


def test_login_and_logout_are_audited_and_logout_ends_the_session(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    staff_id = add_staff(settings, "alice")
    alice = consoles().sign_in(" Alice ")  # usernames are case-insensitive
    assert query(tmp_path, "SELECT action, staff_id FROM audit_log") == [("login", staff_id)]
    assert alice.get("/console/api/queue").status_code == 200
    old = {"Cookie": f"{SESSION_COOKIE}={alice.token}"}

    response = alice.http.post("/console/logout", data={"csrf_token": alice.csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    assert query(tmp_path, "SELECT action, staff_id FROM audit_log ORDER BY id") == [
        ("login", staff_id),
        ("logout", staff_id),
    ]
    with httpx.Client(base_url=server.url, follow_redirects=False) as stranger:
        assert stranger.get("/console/api/queue", headers={**old, **JSON}).status_code == 401
        page = stranger.get("/console", headers={**old, **HTML})
        assert (page.status_code, page.headers["location"]) == (303, "/console/login")
        action = stranger.post("/console/logout", data={"csrf_token": alice.csrf}, headers=old)
        assert action.status_code == 401
    # Signing in again opens a new session.
    assert consoles().sign_in("alice").get("/console/api/queue").status_code == 200


# --- 3. teams ---------------------------------------------------------------------------


def test_agents_see_their_teams_and_a_supervisor_reassigns(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    add_staff(settings, "pat", teams=("permits",))
    add_staff(settings, "ana")
    ben_id = add_staff(settings, "ben")
    sue_id = add_staff(settings, "sue", StaffRole.SUPERVISOR, teams=())
    general = queued_handoff(server, settings, "+15145550111", "general")
    permits = queued_handoff(server, settings, "+15145550122", "permits")
    pat, ana, ben, sue = (consoles().sign_in(name) for name in ("pat", "ana", "ben", "sue"))

    assert [row["id"] for row in pat.queue()] == [permits]
    for path in (f"/console/handoffs/{general}", f"/console/api/handoffs/{general}/messages"):
        assert pat.get(path).status_code == 404
    for action, form in (("claim", {}), ("note", {"text": "mine?"}), ("transfer", {})):
        response = pat.act(f"/console/handoffs/{general}/{action}", **form)
        assert response.status_code == 404, action
    assert handoff_row(tmp_path, general)["status"] == "queued"
    assert pat.get(f"/console/handoffs/{permits}").status_code == 200

    assert [row["id"] for row in ana.queue()] == [general]
    assert ana.get(f"/console/handoffs/{permits}").status_code == 404
    assert {row["id"] for row in sue.queue()} == {general, permits}

    assert ana.act(f"/console/handoffs/{general}/claim").status_code == 200
    taken = ben.act(f"/console/handoffs/{general}/claim")
    assert taken.status_code == 409
    assert taken.json() == {"error": "Someone else has already taken this conversation."}

    response = sue.act(f"/console/handoffs/{general}/transfer", to_staff=ben_id)
    assert response.status_code == 200, response.text
    assert handoff_row(tmp_path, general)["agent_id"] == ben_id
    assert handoff_row(tmp_path, general)["status"] == "claimed"
    (row,) = [row for row in sue.queue() if row["id"] == general]
    assert (row["agent"], row["agent_id"]) == ("Ben", ben_id)
    transfers = query(
        tmp_path, "SELECT staff_id, handoff_id, detail FROM audit_log WHERE action = 'transfer'"
    )
    assert [(s, h, as_json(d)) for s, h, d in transfers] == [(sue_id, general, {"to_staff": "ben"})]

    refused = ana.act(f"/console/handoffs/{general}/reply", text="Still here")
    assert refused.status_code == 409
    assert refused.json() == {"error": "Another agent owns this conversation."}
    assert ben.act(f"/console/handoffs/{general}/reply", text="Ben here").status_code == 200
    assert query(tmp_path, "SELECT staff_id FROM messages WHERE staff_id IS NOT NULL") == [
        (ben_id,)
    ]


# --- 4. the whole flow, audited -----------------------------------------------------------


def test_a_citizen_is_queued_claimed_answered_and_handed_back(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    ana_id = add_staff(settings, "ana")
    ben_id = add_staff(settings, "ben")
    ana = consoles().sign_in("ana")  # online before the citizen asks
    ben = consoles().sign_in("ben")
    driver = ActionDriver(server.url, tmp_path, CITIZEN)
    driver.user("I want to talk to a person", "talk_to_human")
    replies = driver.run("action_talk_to_human")
    assert len(replies) == 1
    assert "You are number 1 in the queue for a person." in replies[0]["text"]
    (handoff_id,) = [row["id"] for row in ana.queue()]
    assert handoff_row(tmp_path, handoff_id) == {
        "status": "queued",
        "kind": "chat",
        "team": "general",
        "agent_id": None,
        "outcome": None,
        "feedback_score": None,
        "reason": "asked",
    }
    page = f"/console/handoffs/{handoff_id}"

    view = ana.get(page)
    assert view.status_code == 200
    assert view.json()["handoff"]["status"] == "queued"
    assert ana.act(f"{page}/claim").json() == {"ok": True, "notice": None}
    taken = ben.act(f"{page}/claim")
    assert (taken.status_code, taken.json()) == (
        409,
        {"error": "Someone else has already taken this conversation."},
    )
    assert handoff_row(tmp_path, handoff_id)["agent_id"] == ana_id

    # While claimed, the bot says nothing; the agent reads the citizen in the transcript.
    latest = max(m["id"] for m in ana.get(page).json()["messages"])
    for text in ("Are you there?", "My permit number is 42"):
        assert say(server, CITIZEN, text) == []
    news = ana.get(f"/console/api/handoffs/{handoff_id}/messages?after={latest}").json()
    assert [(m["author"], m["text"]) for m in news["messages"]] == [
        ("citizen", "Are you there?"),
        ("citizen", "My permit number is 42"),
    ]
    assert news["handoff"]["status"] == "claimed"

    assert ana.act(f"{page}/reply", text="Hello, this is Ana from the city.").status_code == 200
    sql = "SELECT direction, text FROM messages WHERE staff_id = :staff ORDER BY id"
    assert query(tmp_path, sql, staff=ana_id) == [("OUTBOUND", "Hello, this is Ana from the city.")]
    transcript = ana.get(page).json()["messages"]
    assert (transcript[-1]["author"], transcript[-1]["direction"]) == ("Ana", "out")

    assert ana.act(f"{page}/note", text="Wants a permit renewal").status_code == 200
    assert [(n["author"], n["text"]) for n in ana.get(page).json()["notes"]] == [
        ("Ana", "Wants a permit renewal")
    ]
    assert say(server, CITIZEN, "Thank you") == []  # a note is not a message to the citizen

    assert ana.act(f"{page}/hand-back").status_code == 200
    row = handoff_row(tmp_path, handoff_id)
    assert (row["status"], row["outcome"]) == ("closed", "handed_back")
    assert "How did our team do?" in last_outbound_text(tmp_path)

    assert [r["text"] for r in say(server, CITIZEN, "4")] == ["Thank you for your feedback."]
    assert handoff_row(tmp_path, handoff_id)["feedback_score"] == 4
    assert [r["text"] for r in say(server, CITIZEN, "What are your hours?")] == [APOLOGY]
    assert handoff_row(tmp_path, handoff_id)["feedback_score"] == 4

    by_ana = {
        action
        for action, staff_id, audited_handoff in audit_rows(tmp_path)
        if staff_id == ana_id and audited_handoff == handoff_id
    }
    assert {"open", "claim", "reply", "note", "hand_back"} <= by_ana
    assert ("claim", ben_id, handoff_id) not in audit_rows(tmp_path)  # the refused claim


QUESTION = "Is everything correct?"  # the form's open question, with its two options
QUESTION_OPTIONS = [
    {"title": "Yes, send it", "payload": "1"},
    {"title": "Change something", "payload": "2"},
]


def bot_said(settings: Settings, conversation_id: str, text: str, buttons: Any = None) -> None:
    """A bot message in the transcript (what Rasa's replies become on the REST channel)."""

    async def work(session: AsyncSession) -> None:
        session.add(
            Message(
                conversation_id=conversation_id,
                direction=Direction.OUTBOUND,
                channel="rest",
                text=text,
                buttons=buttons,
            )
        )

    in_db(settings, work)


def asked_mid_form(server: ThreadedServer, settings: Settings, tmp_path: Path) -> ActionDriver:
    """The citizen is at the form's confirmation and asks for a person."""
    driver = ActionDriver(server.url, tmp_path, CITIZEN)
    bot_said(settings, driver.conversation_id, QUESTION, QUESTION_OPTIONS)
    driver.active_loop = "application_form"
    driver.user("PERSON", "talk_to_human")
    return driver


def claimed_mid_form(
    ana: Console, server: ThreadedServer, settings: Settings, tmp_path: Path
) -> tuple[ActionDriver, str]:
    """Asked mid-form, the citizen is queued (``ana`` is online) and ``ana`` claims it:
    the citizen's driver and the handoff's id."""
    driver = asked_mid_form(server, settings, tmp_path)
    assert "number 1 in the queue" in driver.texts("action_talk_to_human")
    (handoff_id,) = [row["id"] for row in ana.queue()]
    assert ana.act(f"/console/handoffs/{handoff_id}/claim").status_code == 200
    return driver, handoff_id


def test_a_hand_back_mid_form_asks_the_open_question_again_and_not_the_rating(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    add_staff(settings, "ana")
    ana = consoles().sign_in("ana")
    _, handoff_id = claimed_mid_form(ana, server, settings, tmp_path)
    page = f"/console/handoffs/{handoff_id}"
    assert ana.act(f"{page}/reply", text="What is the correct name?").status_code == 200
    assert say(server, CITIZEN, "Anna Smith") == []  # to the agent

    assert ana.act(f"{page}/hand-back").json() == {"ok": True, "notice": None}
    # Told once: the assistant is back, and its question again with its options.
    sql = (
        "SELECT text, buttons FROM messages WHERE direction = 'OUTBOUND' AND staff_id IS NULL"
        " ORDER BY id DESC LIMIT 1"
    )
    ((text, buttons),) = query(tmp_path, sql)
    assert text == (
        "You are back with our automated assistant. Let us continue where we stopped:\n" + QUESTION
    )
    assert as_json(buttons) == QUESTION_OPTIONS
    (asked,) = query(
        tmp_path, "SELECT feedback_asked_at FROM handoffs WHERE id = :id", id=handoff_id
    )
    assert asked == (None,)  # no rating asked in the same breath

    # The next answer goes to the bot (here: the engine-down apology), not to a rating.
    assert [r["text"] for r in say(server, CITIZEN, "1")] == [APOLOGY]
    assert handoff_row(tmp_path, handoff_id)["feedback_score"] is None


class RasaDouble:
    """Rasa's HTTP API as the gateway uses it here: the tracker's open form, appended
    events (recorded), and the REST channel (it echoes what reached the engine)."""

    def __init__(self, form: str | None) -> None:
        self.form = form
        self.appended: list[tuple[str, list[dict[str, Any]]]] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/conversations/{sender}/tracker")
        async def tracker(sender: str) -> dict[str, Any]:
            return {"sender_id": sender, "active_loop": {"name": self.form} if self.form else {}}

        @app.post("/conversations/{sender}/tracker/events")
        async def events(sender: str, request: Request) -> dict[str, Any]:
            self.appended.append((sender, await request.json()))
            return {"sender_id": sender}

        @app.post("/webhooks/rest/webhook")
        async def webhook(request: Request) -> list[dict[str, str]]:
            body = await request.json()
            return [{"recipient_id": body["sender"], "text": f"engine: {body['message']}"}]

        return app


@pytest.fixture
def rasa() -> Iterator[tuple[RasaDouble, ThreadedServer]]:
    double = RasaDouble("application_form")
    with serve(double.app()) as running:
        yield double, running


@pytest.fixture
def with_rasa(
    tmp_path: Path, backend: ThreadedServer, rasa: tuple[RasaDouble, ThreadedServer]
) -> Iterator[tuple[ThreadedServer, Settings]]:
    settings = gateway_settings(
        tmp_path, backend.url, office_hours=ALWAYS_OPEN, rasa_url=rasa[1].url
    )
    with gateway(settings) as running:
        yield running, settings


@pytest.fixture
def agent_with_rasa(with_rasa: tuple[ThreadedServer, Settings]) -> Iterator[Console]:
    """Ana, signed in (so online) on the gateway that talks to the Rasa double."""
    server, settings = with_rasa
    add_staff(settings, "ana")
    ana = Console(server.url).sign_in("ana")
    try:
        yield ana
    finally:
        ana.close()


def test_a_hand_back_sets_rasa_s_interrupted_form_going_so_it_takes_the_next_answer(
    with_rasa: tuple[ThreadedServer, Settings],
    rasa: tuple[RasaDouble, ThreadedServer],
    agent_with_rasa: Console,
    tmp_path: Path,
) -> None:
    server, settings = with_rasa
    ana = agent_with_rasa
    driver, handoff_id = claimed_mid_form(ana, server, settings, tmp_path)
    assert ana.act(f"/console/handoffs/{handoff_id}/hand-back").status_code == 200
    # Rasa's form (interrupted by the request for a person) is set going again.
    assert rasa[0].appended == [
        (driver.conversation_id, [{"event": "active_loop", "name": "application_form"}])
    ]
    assert last_outbound_text(tmp_path).endswith("Let us continue where we stopped:\n" + QUESTION)
    # A digit answers the question asked again: its option's payload goes to the engine.
    assert [r["text"] for r in say(server, CITIZEN, "2")] == ["engine: 2"]


def test_a_hand_back_after_rasa_closed_the_form_asks_only_the_rating(
    with_rasa: tuple[ThreadedServer, Settings],
    rasa: tuple[RasaDouble, ThreadedServer],
    agent_with_rasa: Console,
    tmp_path: Path,
) -> None:
    server, settings = with_rasa
    ana = agent_with_rasa
    _, handoff_id = claimed_mid_form(ana, server, settings, tmp_path)
    rasa[0].form = None  # e.g. the form ended meanwhile: no question to come back to
    assert ana.act(f"/console/handoffs/{handoff_id}/hand-back").status_code == 200
    assert rasa[0].appended == []
    assert last_outbound_text(tmp_path) == (
        "You are back with our automated assistant."
        " How did our team do? Reply a number from 1 (poor) to 5 (very good)."
    )
    assert [r["text"] for r in say(server, CITIZEN, "5")] == ["Thank you for your feedback."]


def test_continue_with_the_assistant_mid_form_asks_the_question_and_takes_the_answer(
    with_rasa: tuple[ThreadedServer, Settings],
    rasa: tuple[RasaDouble, ThreadedServer],
    tmp_path: Path,
) -> None:
    server, settings = with_rasa  # nobody online: a message or a call back is offered
    driver = asked_mid_form(server, settings, tmp_path)
    (offer,) = driver.run("action_talk_to_human")
    assert [b["title"] for b in offer["buttons"]] == OFFER
    bot_said(settings, driver.conversation_id, offer["text"], offer["buttons"])
    replies = say(server, CITIZEN, "3")
    assert [(r["text"], r.get("buttons")) for r in replies] == [
        ("OK, let us continue.", None),
        (QUESTION, QUESTION_OPTIONS),
    ]
    assert rasa[0].appended == [
        (driver.conversation_id, [{"event": "active_loop", "name": "application_form"}])
    ]
    assert [r["text"] for r in say(server, CITIZEN, "1")] == ["engine: 1"]


# --- 5. the pause survives a restart --------------------------------------------------


def test_the_bot_stays_silent_for_a_claimed_conversation_after_a_restart(
    tmp_path: Path, backend: ThreadedServer
) -> None:
    settings = gateway_settings(tmp_path, backend.url, office_hours=ALWAYS_OPEN)
    with gateway(settings) as first:
        add_staff(settings, "ana")
        ana = Console(first.url).sign_in("ana")
        try:
            driver = ActionDriver(first.url, tmp_path, CITIZEN)
            driver.user("a person please", "talk_to_human")
            assert "number 1 in the queue" in driver.texts("action_talk_to_human")
            (handoff_id,) = [row["id"] for row in ana.queue()]
            assert ana.act(f"/console/handoffs/{handoff_id}/claim").status_code == 200
            assert say(first, CITIZEN, "before the restart") == []
        finally:
            ana.close()
    with gateway(settings) as second:  # a new app instance on the same database
        assert say(second, CITIZEN, "after the restart") == []
        ana = Console(second.url).sign_in("ana")
        try:
            texts = [
                m["text"] for m in ana.get(f"/console/handoffs/{handoff_id}").json()["messages"]
            ]
            assert texts[-2:] == ["before the restart", "after the restart"]
            assert ana.act(f"/console/handoffs/{handoff_id}/hand-back").status_code == 200
        finally:
            ana.close()
        # Handed back, the bot (here: its engine-down apology) answers again.
        assert [r["text"] for r in say(second, CITIZEN, "5")] == ["Thank you for your feedback."]
        assert [r["text"] for r in say(second, CITIZEN, "hello")] == [APOLOGY]


# --- 6. office hours decide: live chat, or a message / call back --------------------------


def toronto(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Toronto wall time as the UTC instant the gateway's clock would give."""
    return datetime(year, month, day, hour, minute, tzinfo=TORONTO).astimezone(UTC)


MONDAY_10 = toronto(2026, 1, 12, 10, 0)
SATURDAY_NOON = toronto(2026, 1, 17, 12, 0)
SMS_NUMBER = "+15145550123"


def office(directory: Path, hours: str = WEEKDAYS, holidays: tuple[date, ...] = ()) -> Settings:
    return gateway_settings(
        directory,
        "http://127.0.0.1:9",
        office_hours=hours,
        holidays=holidays,
        timezone="America/Toronto",
    )


async def sms_conversation(sessions: async_sessionmaker[AsyncSession]) -> Conversation:
    async with sessions() as session:
        citizen = Citizen(language="en")
        session.add(citizen)
        await session.flush()
        identity = ChannelIdentity(citizen_id=citizen.id, channel="sms", external_id=SMS_NUMBER)
        session.add(identity)
        await session.flush()
        conversation = Conversation(identity_id=identity.id, citizen_id=citizen.id, channel="sms")
        session.add(conversation)
        await session.commit()
    return conversation


async def agent_seen(sessions: async_sessionmaker[AsyncSession], at: datetime) -> None:
    async with sessions() as session:
        session.add(
            StaffMember(
                username="ana",
                display_name="Ana",
                password_hash="not used here",
                role=StaffRole.AGENT,
                teams=["general"],
                last_seen_at=at,
            )
        )
        await session.commit()


async def the_handoff(sessions: async_sessionmaker[AsyncSession]) -> Handoff:
    async with sessions() as session:
        return (await session.scalars(select(Handoff))).one()


class CitizenSide:
    """Plays the gateway's part around :meth:`Handoffs.intercept`: a digit or an option's
    title answers the last options offered (as ConversationService resolves it)."""

    def __init__(self, handoffs: Handoffs, conversation: Conversation) -> None:
        self.handoffs = handoffs
        self.conversation = conversation
        self.words = localizer("en")
        self.options: list[dict[str, str]] = []

    async def ask_for_a_person(self) -> list[OutgoingMessage]:
        async with self.handoffs.sessions() as session:
            conversation = await session.get(Conversation, self.conversation.id)
            assert conversation is not None
            replies = await self.handoffs.request(session, conversation, self.words, "asked", None)
            await session.commit()
        self._remember(replies)
        return replies

    async def say(self, text: str) -> list[OutgoingMessage] | None:
        resolved = choose_option(text, self.options) or text
        replies = await self.handoffs.intercept(
            self.conversation.citizen_id, text, resolved, self.words
        )
        self._remember(replies or [])
        return replies

    def _remember(self, replies: list[OutgoingMessage]) -> None:
        if replies:
            buttons = replies[-1].buttons
            self.options = [{"title": b.title, "payload": b.payload} for b in buttons]


OFFER = [LEAVE_MESSAGE, CALL_ME_BACK, BACK_TO_BOT]


@pytest.mark.parametrize(
    ("holidays", "now", "online", "status", "expected"),
    [
        pytest.param(
            (), MONDAY_10, True, "queued", ["You are number 1 in the queue"], id="open-agent-online"
        ),
        pytest.param(
            (),
            MONDAY_10,
            False,
            "choosing",
            ["Sorry, nobody from our team is available right now.", "leave a message"],
            id="open-nobody-online",
        ),
        pytest.param(
            (),
            SATURDAY_NOON,
            True,
            "choosing",
            ["Our team is not available right now. They are back Mon, Jan 19 8:00 AM."],
            id="saturday-closed",
        ),
        pytest.param(
            (date(2026, 1, 12),),
            MONDAY_10,
            True,
            "choosing",
            ["Our team is not available right now. They are back tomorrow at 8:00 AM."],
            id="holiday-closed",
        ),
    ],
)
async def test_office_hours_and_agents_online_decide_the_route(
    database: Path,
    sessions: async_sessionmaker[AsyncSession],
    holidays: tuple[date, ...],
    now: datetime,
    online: bool,
    status: str,
    expected: list[str],
) -> None:
    if online:
        await agent_seen(sessions, now - timedelta(seconds=30))
    handoffs = Handoffs(office(database, WEEKDAYS, holidays), sessions, clock=lambda: now)
    citizen = CitizenSide(handoffs, await sms_conversation(sessions))
    (reply,) = await citizen.ask_for_a_person()
    for part in expected:
        assert part in reply.text
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.kind, handoff.team) == (status, "chat", "general")
    if status == "choosing":
        assert [b.title for b in reply.buttons] == OFFER
        assert [b.payload for b in reply.buttons] == [CHOICE_MESSAGE, CHOICE_CALLBACK, CHOICE_BOT]
        assert "Would you like to leave a message or be called back?" in reply.text
    else:
        assert reply.buttons == ()


async def test_an_agent_seen_too_long_ago_is_not_online(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await agent_seen(sessions, MONDAY_10 - timedelta(seconds=91))
    handoffs = Handoffs(office(database), sessions, clock=lambda: MONDAY_10)
    (reply,) = await CitizenSide(handoffs, await sms_conversation(sessions)).ask_for_a_person()
    assert reply.text.startswith("Sorry, nobody from our team is available right now.")
    assert (await the_handoff(sessions)).status == "choosing"


async def choosing(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> tuple[CitizenSide, OfficeHours]:
    """Monday 10:00, within hours, nobody online: the citizen is offered the choices."""
    settings = office(database)
    citizen = CitizenSide(
        Handoffs(settings, sessions, clock=lambda: MONDAY_10), await sms_conversation(sessions)
    )
    (offer,) = await citizen.ask_for_a_person()
    assert [b.title for b in offer.buttons] == OFFER
    return citizen, OfficeHours.from_settings(settings)


async def test_call_back_at_a_chosen_slot_on_the_sms_number(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    citizen, hours = await choosing(database, sessions)
    (slots,) = await citizen.say("2") or []
    assert slots.text == "When should we call you on the number ending in 0123? Choose a time:"
    expected = hours.callback_slots(MONDAY_10, count=4)
    assert len(slots.buttons) == len(expected) + 1  # and "Continue with the assistant"
    assert slots.buttons[-1].payload == CHOICE_BOT
    assert "11:00" in slots.buttons[0].title  # 10:30 at the earliest, on the hour
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.kind) == ("choosing", "callback")

    (taken,) = await citizen.say("1") or []
    assert (
        taken.text == "Thank you. We will call you on the number ending in 0123 today at 11:00 AM."
    )
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.kind) == ("queued", "callback")
    assert handoff.callback_number == SMS_NUMBER  # known: the citizen writes from it
    assert handoff.callback_at is not None
    assert await citizen.say("anything else") is None  # the bot answers meanwhile


async def test_the_chosen_call_back_slot_is_stored_as_that_instant(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    citizen, hours = await choosing(database, sessions)
    await citizen.say("2")
    await citizen.say("1")
    first_start, _end = hours.callback_slots(MONDAY_10, count=4)[0]
    handoff = await the_handoff(sessions)
    assert handoff.callback_at is not None
    assert as_utc(handoff.callback_at) == first_start.astimezone(UTC)
    assert as_utc(handoff.callback_at) == datetime(2026, 1, 12, 16, 0, tzinfo=UTC)


async def test_leave_a_message_for_the_team(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    citizen, _hours = await choosing(database, sessions)
    (prompt,) = await citizen.say("1") or []
    assert prompt.text.startswith("Please write your message in one text.")
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.kind) == ("choosing", "message")

    (taken,) = await citizen.say("My bin was not collected on Monday.") or []
    assert taken.text.startswith("Thank you. Your message is with our team.")
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.kind) == ("queued", "message")
    assert await citizen.say("anything else") is None  # the bot answers meanwhile


async def test_continue_with_the_assistant_declines_the_offer(
    database: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    citizen, _hours = await choosing(database, sessions)
    replies = await citizen.say("3") or []
    assert [r.text for r in replies] == ["OK, let us continue."]
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.outcome) == ("closed", "declined")


@pytest.mark.parametrize(
    "typed", ["!handoff slot tomorrow", "!handoff slot 2020-01-01T03:00:00+00:00"]
)
async def test_a_typed_slot_that_was_not_offered_is_not_taken(
    database: Path, sessions: async_sessionmaker[AsyncSession], typed: str
) -> None:
    citizen, _hours = await choosing(database, sessions)
    await citizen.say("2")
    replies = await citizen.say(typed)
    assert replies is not None
    assert replies[0].text == "When should we call you on the number ending in 0123? Choose a time:"
    handoff = await the_handoff(sessions)
    assert (handoff.status, handoff.callback_at) == ("choosing", None)


# --- 7. continue by text ----------------------------------------------------------------


def test_an_agent_continues_a_phone_call_by_sms_in_french(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
) -> None:
    ana_id = add_staff(settings, "ana")
    ana = consoles().sign_in("ana")
    assert "csrf_token" in ana.http.get("/console/continue", headers=HTML).text
    response = ana.act("/console/continue", phone="(514) 555-0199", language="fr")
    assert response.status_code == 200, response.text
    handoff_id = response.json()["handoff"]

    handoff = handoff_row(tmp_path, handoff_id)
    assert (handoff["status"], handoff["kind"], handoff["agent_id"]) == ("claimed", "agent", ana_id)
    assert query(
        tmp_path,
        "SELECT h.channel, i.external_id, c.language FROM handoffs h"
        " JOIN conversations v ON v.id = h.conversation_id"
        " JOIN channel_identities i ON i.id = v.identity_id"
        " JOIN citizens c ON c.id = h.citizen_id WHERE h.id = :id",
        id=handoff_id,
    ) == [("sms", "+15145550199", "fr")]
    french = localizer("fr")
    expected = french.gettext(CONTINUE_BY_TEXT).format(
        organisation=french.gettext(settings.organisation_name)
    )
    assert french.gettext(CONTINUE_BY_TEXT) != CONTINUE_BY_TEXT  # translated, not English
    assert query(tmp_path, "SELECT text, staff_id FROM messages WHERE direction = 'OUTBOUND'") == [
        (expected, ana_id)
    ]
    ((channel, recipient, status, body),) = query(
        tmp_path, "SELECT channel, recipient, status, body FROM deliveries"
    )
    assert (channel, recipient, status) == ("sms", "+15145550199", "queued")  # no Twilio here
    assert french.gettext(settings.organisation_name) in body
    assert "STOP" in body
    assert ("continue_by_text", ana_id, handoff_id) in audit_rows(tmp_path)
    # The citizen's answer goes to the agent, not to the bot.
    assert [row["id"] for row in ana.queue()] == [handoff_id]


@pytest.mark.parametrize(
    ("phone", "language", "code", "answer"),
    [
        pytest.param(
            "514-555-0177",
            "fr",
            409,
            {"error": "This number has opted out of messages (STOP)."},
            id="opted-out",
        ),
        pytest.param(
            "12", "fr", 409, {"error": "That is not a phone number we can text."}, id="no-number"
        ),
        pytest.param(
            "514-555-0177",
            "de",
            422,
            {"detail": "unsupported language"},
            id="german",
        ),
    ],
)
def test_continue_by_text_refuses(
    server: ThreadedServer,
    settings: Settings,
    tmp_path: Path,
    consoles: Callable[[], Console],
    phone: str,
    language: str,
    code: int,
    answer: dict[str, str],
) -> None:
    add_staff(settings, "ana")

    async def opted_out(session: AsyncSession) -> None:
        citizen = Citizen(language="fr")
        session.add(citizen)
        await session.flush()
        identity = ChannelIdentity(
            citizen_id=citizen.id, channel="sms", external_id="+15145550177", opted_out_at=utcnow()
        )
        session.add(identity)
        await session.flush()
        session.add(Conversation(identity_id=identity.id, citizen_id=citizen.id, channel="sms"))

    in_db(settings, opted_out)
    ana = consoles().sign_in("ana")
    response = ana.act("/console/continue", phone=phone, language=language)
    assert (response.status_code, response.json()) == (code, answer)
    assert query(tmp_path, "SELECT count(*) FROM handoffs") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM deliveries") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM messages") == [(0,)]
    assert [action for action, _, _ in audit_rows(tmp_path)] == ["login"]
    if code == 409:  # a browser is sent back to the form with the reason
        form = {"phone": phone, "language": language, "csrf_token": ana.csrf}
        page = ana.http.post("/console/continue", data=form)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/continue?error=")
