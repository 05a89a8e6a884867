"""The REST and web-chat channels against a real gateway on loopback (Rasa down here:
these tests cover what the channel itself owns; tests/e2e runs the real engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from support.db import database_url, query
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    with gateway(gateway_settings(tmp_path, "http://127.0.0.1:9")) as running:
        yield running


def stored_messages(directory: Path) -> list[tuple[str, str]]:
    return query(directory, "SELECT direction, text FROM messages ORDER BY id")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("", "empty message", id="empty"),
        pytest.param("   \n ", "empty message", id="blank"),
        pytest.param("😀🙏🎉", "only read words", id="emoji-only"),
        pytest.param("x" * 10_000, "too long", id="10kB"),
    ],
)
def test_odd_input_gets_a_polite_reply_and_is_kept(
    server: ThreadedServer, tmp_path: Path, message: str, expected: str
) -> None:
    response = httpx.post(
        f"{server.url}/channels/rest/webhook", json={"sender": "odd", "message": message}
    )
    assert response.status_code == 200
    assert expected in response.json()[0]["text"]
    assert stored_messages(tmp_path)[0] == ("INBOUND", message)


def test_rasa_down_gets_an_apology_and_the_message_is_kept(
    server: ThreadedServer, tmp_path: Path
) -> None:
    response = httpx.post(
        f"{server.url}/channels/rest/webhook", json={"sender": "s1", "message": "hello"}
    )
    assert response.status_code == 200
    assert "cannot answer right now" in response.json()[0]["text"]
    assert stored_messages(tmp_path)[0] == ("INBOUND", "hello")


def test_a_repeated_message_id_is_answered_once(server: ThreadedServer, tmp_path: Path) -> None:
    body = {"sender": "s2", "message": "hello", "message_id": "m-1"}
    first = httpx.post(f"{server.url}/channels/rest/webhook", json=body).json()
    second = httpx.post(f"{server.url}/channels/rest/webhook", json=body).json()
    assert len(first) == 1 and second == []
    assert [m for m in stored_messages(tmp_path) if m[0] == "INBOUND"] == [("INBOUND", "hello")]


@pytest.mark.parametrize(
    "body",
    [{}, {"message": "hi"}, {"sender": "", "message": "hi"}, {"sender": "x" * 129}],
    ids=["nothing", "no-sender", "empty-sender", "sender-too-long"],
)
def test_malformed_rest_bodies_are_refused(server: ThreadedServer, body: dict[str, str]) -> None:
    response = httpx.post(f"{server.url}/channels/rest/webhook", json=body)
    assert response.status_code == 422


def test_health_reports_rasa_missing(server: ThreadedServer) -> None:
    response = httpx.get(f"{server.url}/readyz")
    assert response.status_code == 503
    assert "rasa" in response.json()["problems"]
    assert "database" not in response.json()["problems"]


def chat_cookie(server: ThreadedServer) -> str:
    """The session cookie a browser gets with the page."""
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    return str(page.cookies["civicgate_chat"])


def open_socket(server: ThreadedServer, cookie: str | None, origin: str) -> ClientConnection:
    headers = {"Origin": origin, **({"Cookie": f"civicgate_chat={cookie}"} if cookie else {})}
    ws_url = server.url.replace("http://", "ws://") + "/channels/webchat/ws"
    return connect(ws_url, additional_headers=headers, open_timeout=5)


def test_page_sets_an_http_only_session_cookie_and_follows_the_browser_language(
    server: ThreadedServer,
) -> None:
    page = httpx.get(f"{server.url}/", headers={"Accept-Language": "de-DE,en;q=0.5"})
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert "/channels/webchat/webchat.js" in page.text
    cookie = page.headers["set-cookie"]
    assert "civicgate_chat=" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()  # sent when a link opens the page
    script = httpx.get(f"{server.url}/channels/webchat/webchat.js")
    assert script.headers["content-type"].startswith("application/javascript")


def test_websocket_talks_with_a_session_cookie(server: ThreadedServer) -> None:
    cookie = chat_cookie(server)
    with open_socket(server, cookie, server.url) as socket:
        socket.send('{"message": "🙂"}')
        assert "only read words" in socket.recv(timeout=10)


@pytest.mark.parametrize(
    ("with_cookie", "origin"),
    [(False, None), (True, "http://evil.example")],
    ids=["no-session", "other-origin"],
)
def test_websocket_without_a_session_or_from_another_site_is_refused(
    server: ThreadedServer, with_cookie: bool, origin: str | None
) -> None:
    cookie = chat_cookie(server) if with_cookie else None
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, cookie, origin or server.url)
    assert refused.value.response.status_code == 403


def test_post_fallback_needs_the_session_cookie(server: ThreadedServer) -> None:
    anonymous = httpx.post(f"{server.url}/channels/webchat/messages", json={"message": "hi"})
    assert anonymous.status_code == 403
    replies = httpx.post(
        f"{server.url}/channels/webchat/messages",
        json={"message": ""},
        cookies={"civicgate_chat": chat_cookie(server)},
    ).json()
    assert "empty message" in replies[0]["text"]


async def queue_for_browser(directory: Path, cookie: str, text: str) -> None:
    """What an agent's reply or a notification does: a transcript and an outbox row."""
    from sqlalchemy import select

    from bot.db.models import ChannelIdentity, Conversation
    from bot.db.session import create_engine, session_factory
    from bot.delivering import queue_text
    from bot.i18n import localizer
    from channels.base import Button

    engine = create_engine(database_url(directory))
    async with session_factory(engine)() as session:
        identity = await session.scalar(
            select(ChannelIdentity).where(ChannelIdentity.external_id == cookie)
        )
        assert identity is not None
        conversation = await session.scalar(
            select(Conversation).where(Conversation.identity_id == identity.id)
        )
        assert conversation is not None
        buttons = (Button("Yes", "/affirm"), Button("No", "/deny"))
        await queue_text(session, conversation, identity, text, localizer("en"), 3, buttons=buttons)
        await session.commit()
    await engine.dispose()


async def test_what_is_said_outside_a_turn_reaches_the_browser_once(
    server: ThreadedServer, tmp_path: Path
) -> None:
    import asyncio
    import json

    cookie = chat_cookie(server)
    cookies = {"civicgate_chat": cookie}
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as client:
        await client.post("/channels/webchat/messages", json={"message": "hello"})
        await queue_for_browser(tmp_path, cookie, "Ada from the call centre here.")
        with open_socket(server, cookie, server.url) as socket:  # pushed on the websocket
            pushed = json.loads(await asyncio.to_thread(socket.recv, 10))
        assert pushed == {
            "text": "Ada from the call centre here.",
            "buttons": [{"title": "Yes", "payload": "1"}, {"title": "No", "payload": "2"}],
        }
        assert (await client.get("/channels/webchat/messages")).json() == []  # shown once
        await queue_for_browser(tmp_path, cookie, "Are you still there?")
        polled = (await client.get("/channels/webchat/messages")).json()  # no WebSocket
        assert [m["text"] for m in polled] == ["Are you still there?"]
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert (await anonymous.get("/channels/webchat/messages")).status_code == 403
