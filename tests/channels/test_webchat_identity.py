"""Web-chat identities come only from the server (issue 18): the ``civicgate_chat`` cookie
is issued with the page and signed; anything else is refused before a row is written, and
the websocket is opened only from an allowed origin."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bot.settings import Settings
from channels.webchat import issue_cookie
from support.db import query
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings

PUBLIC = "https://chat.example.org"
COOKIE = "civicgate_chat"


def page_cookie(url: str, **headers: str) -> httpx.Response:
    page = httpx.get(f"{url}/", headers=headers)
    assert page.status_code == 200
    return page


def stored(directory: Path) -> list[tuple[int, int]]:
    """Messages and channel identities in the gateway's database."""
    [(messages,)] = query(directory, "SELECT count(*) FROM messages")
    [(identities,)] = query(directory, "SELECT count(*) FROM channel_identities")
    return [(messages, identities)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    with gateway(gateway_settings(tmp_path, "http://127.0.0.1:9")) as running:
        yield running


def good(url: str) -> str:
    return str(page_cookie(url).cookies[COOKIE])


def other_secret(_url: str) -> str:
    """Well formed, signed, but with another deployment's secret."""
    return issue_cookie(Settings(_env_file=None, webchat_cookie_secret="another"))  # type: ignore[call-arg]


def tampered(url: str) -> str:
    """The page's cookie with another session id under its signature."""
    _session, signature = good(url).split(".")
    return f"{secrets.token_urlsafe(32)}.{signature}"


# Cookies a client could send that the server never issued (None: no cookie at all).
FORGED: list[tuple[str, Callable[[str], str | None]]] = [
    ("missing", lambda _url: None),
    ("invented", lambda _url: secrets.token_urlsafe(32)),
    ("unsigned-with-dot", lambda _url: f"{secrets.token_urlsafe(32)}."),
    ("made-up-signature", lambda _url: f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"),
    ("another-secret", other_secret),
    ("another-session", tampered),
    ("truncated", lambda url: good(url)[:-1]),
    ("extended", lambda url: good(url) + "A"),
    ("empty", lambda _url: ""),
]


@pytest.mark.parametrize(("name", "forge"), FORGED, ids=[name for name, _ in FORGED])
def test_a_cookie_the_server_did_not_issue_is_refused_and_nothing_is_stored(
    server: ThreadedServer, tmp_path: Path, name: str, forge: Callable[[str], str | None]
) -> None:
    cookie = forge(server.url)
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    posted = httpx.post(
        f"{server.url}/channels/webchat/messages", json={"message": "hello"}, headers=headers
    )
    assert (posted.status_code, posted.json()) == (
        403,
        {"detail": "no chat session; reload the page"},
    )
    polled = httpx.get(f"{server.url}/channels/webchat/messages", headers=headers)
    assert polled.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        connect(
            server.url.replace("http://", "ws://") + "/channels/webchat/ws",
            additional_headers={"Origin": server.url, **headers},
            open_timeout=5,
        )
    assert refused.value.response.status_code == 403
    assert stored(tmp_path) == [(0, 0)]
    # Loading the page replaces it with one the server signed, which works.
    if cookie is not None:
        page = page_cookie(server.url, Cookie=f"{COOKIE}={cookie}")
        issued = page.cookies[COOKIE]
        assert issued != cookie
        answered = httpx.post(
            f"{server.url}/channels/webchat/messages",
            json={"message": ""},
            cookies={COOKIE: issued},
        )
        assert answered.status_code == 200
        assert stored(tmp_path) == [(2, 1)]  # the message and the reply, one identity


def test_the_page_keeps_a_cookie_it_issued(server: ThreadedServer) -> None:
    cookie = good(server.url)
    again = page_cookie(server.url, Cookie=f"{COOKIE}={cookie}")
    assert "set-cookie" not in again.headers


@pytest.mark.parametrize(
    ("public_base_url", "host", "secure"),
    [
        (None, None, False),  # make run on loopback
        (PUBLIC, None, False),  # the loopback port beside the public URL (tests)
        (PUBLIC, "chat.example.org", True),  # behind the proxy, at the public URL
        ("http://chat.example.org", "chat.example.org", False),
    ],
)
def test_the_cookie_is_http_only_lax_and_secure_behind_https(
    tmp_path: Path, public_base_url: str | None, host: str | None, secure: bool
) -> None:
    settings = gateway_settings(tmp_path, "http://127.0.0.1:9", public_base_url=public_base_url)
    with gateway(settings) as running:
        page = page_cookie(running.url, **({"Host": host} if host else {}))
    attributes = [part.strip().lower() for part in page.headers["set-cookie"].split(";")]
    assert attributes[0].startswith(f"{COOKIE}=")
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert ("secure" in attributes) is secure


# The websocket's Origin against WEBCHAT_ALLOWED_ORIGINS: only the listed origins; when
# none are (None), PUBLIC_BASE_URL's origin, if set, and the request's own host.
ORIGINS = [
    (None, None, "{url}", True),
    (None, None, "http://evil.example", False),
    (None, None, "{url}.evil.example", False),
    (None, None, None, False),  # a browser always sends one
    (("https://chat.example.org",), None, "https://chat.example.org", True),
    (("https://chat.example.org",), None, "https://chat.example.org:443", True),
    (("https://chat.example.org",), None, "http://chat.example.org", False),
    (("https://chat.example.org",), None, "{url}", False),  # listed: only those
    (None, PUBLIC, "https://chat.example.org", True),
    (None, PUBLIC, "{url}", True),  # the page on the loopback port beside it
    (None, PUBLIC, "https://evil.example", False),
]


@pytest.mark.parametrize(("allowed", "public_base_url", "origin", "opened"), ORIGINS)
def test_the_websocket_opens_only_from_an_allowed_origin(
    tmp_path: Path,
    allowed: tuple[str, ...] | None,
    public_base_url: str | None,
    origin: str | None,
    opened: bool,
) -> None:
    overrides = {"webchat_allowed_origins": allowed} if allowed else {}
    settings = gateway_settings(
        tmp_path, "http://127.0.0.1:9", public_base_url=public_base_url, **overrides
    )
    with gateway(settings) as running:
        cookie = good(running.url)
        headers = {"Cookie": f"{COOKIE}={cookie}"}
        if origin is not None:
            headers["Origin"] = origin.format(url=running.url)
        ws_url = running.url.replace("http://", "ws://") + "/channels/webchat/ws"
        if opened:
            with connect(ws_url, additional_headers=headers, open_timeout=5) as socket:
                socket.send('{"message": ""}')
                assert "empty message" in socket.recv(timeout=10)
            assert stored(tmp_path) == [(2, 1)]
        else:
            # Refused in the handshake (``close(1008)`` before ``accept``; the server
            # answers it with 403): nothing is read from a foreign page's socket.
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url, additional_headers=headers, open_timeout=5)
            assert refused.value.response.status_code == 403
            assert stored(tmp_path) == [(0, 0)]
