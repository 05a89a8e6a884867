"""Hostile or malformed input on every channel (issue 18): a real gateway on loopback with
SMS and Telegram configured, driven as their providers drive it (signed Twilio webhooks,
Telegram Update JSON, the web-chat socket). Rasa is down: a message that reaches the
engine is answered with the apology, which is how these tests see it got through.

Each case asserts the exact reply (or status) and what was stored: odd input is kept and
answered politely, what is not a message is refused with a 4xx, never a 500, and a huge
message does not freeze the gateway (``/healthz`` keeps answering meanwhile).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from bot.conversation import EMPTY_MESSAGE, ENGINE_DOWN_MESSAGE, NO_WORDS_MESSAGE, TOO_LONG_MESSAGE
from bot.i18n import localizer
from bot.sms import MEDIA_ONLY
from channels.limits import MAX_BODY_BYTES
from support.db import query
from support.stack import SMS_PUBLIC_URL as PUBLIC
from support.stack import TELEGRAM_SECRET as SECRET
from support.stack import ChannelStack as Stack
from support.stack import channel_stack
from support.telegram_double import SECRET_HEADER, WEBHOOK_PATH, TelegramUser
from support.twilio_double import SmsPhone, sign

NUMBER = "+15145550100"
CHAT_ID = 777_000_222
HUGE = 300_000
LIMIT = 1000  # Settings.max_message_chars, named in the "too long" answer
SLOWEST_HEALTHZ = 0.100  # seconds: the slowest /healthz allowed while a huge message runs

WORDS = localizer("en")
EMPTY = WORDS.gettext(EMPTY_MESSAGE)
NO_WORDS = WORDS.gettext(NO_WORDS_MESSAGE)
TOO_LONG = WORDS.gettext(TOO_LONG_MESSAGE).format(limit=LIMIT)
APOLOGY = WORDS.gettext(ENGINE_DOWN_MESSAGE)  # the engine was asked: the message got through
PICTURES = WORDS.gettext(MEDIA_ONLY)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with channel_stack(tmp_path, "http://127.0.0.1:9", delivery_retry_base_seconds=0.1) as running:
        yield running


# -- the channels, each driven as its provider or browser drives it -------------------------


class Citizen(Protocol):
    stores_lone_surrogate_as: str  # what "\ud800" becomes in the transcript

    def say(self, text: str) -> list[str]:
        """Send ``text`` on this channel; the texts of the replies it gets."""
        ...


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: "\ud800" travels as valid JSON


@dataclass
class RestCaller:
    stack: Stack
    stores_lone_surrogate_as: str = "\ufffd"

    def say(self, text: str) -> list[str]:
        response = httpx.post(
            f"{self.stack.url}/channels/rest/webhook",
            content=_json({"sender": "caller-1", "message": text}),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return [reply["text"] for reply in response.json()]


def chat_cookie(url: str) -> str:
    return str(httpx.get(f"{url}/").cookies["civicgate_chat"])


@dataclass
class ChatPoster:
    """A browser without WebSocket: the POST fallback."""

    stack: Stack
    stores_lone_surrogate_as: str = "\ufffd"
    cookie: str = ""

    def say(self, text: str) -> list[str]:
        self.cookie = self.cookie or chat_cookie(self.stack.url)
        response = httpx.post(
            f"{self.stack.url}/channels/webchat/messages",
            content=_json({"message": text}),
            headers={"Content-Type": "application/json", "Cookie": f"civicgate_chat={self.cookie}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return [reply["text"] for reply in response.json()]


def open_socket(url: str) -> ClientConnection:
    headers = {"Origin": url, "Cookie": f"civicgate_chat={chat_cookie(url)}"}
    return connect(
        url.replace("http://", "ws://") + "/channels/webchat/ws",
        additional_headers=headers,
        open_timeout=5,
        max_size=None,
    )


@dataclass
class ChatSocket:
    """The web-chat page on its websocket: one reply frame per answer here."""

    stack: Stack
    stores_lone_surrogate_as: str = "\ufffd"

    def say(self, text: str) -> list[str]:
        with open_socket(self.stack.url) as socket:
            socket.send(_json({"message": text}).decode())
            return [json.loads(socket.recv(timeout=30))["text"]]


def signed_post(stack: Stack, params: dict[str, str | bytes]) -> httpx.Response:
    """A Twilio webhook with any bytes in it, signed over what the gateway decodes (a
    broken UTF-8 sequence becomes U+FFFD on both sides, as Twilio's own signing sees it)."""
    body = urlencode(params)
    path = "/channels/sms/twilio"
    decoded = dict(parse_qsl(body, keep_blank_values=True))
    return httpx.post(
        stack.url + path,
        content=body,
        headers={"X-Twilio-Signature": sign(PUBLIC + path, decoded),
                 "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )  # fmt: skip


_sids = iter(range(1, 1_000_000))


def sms_params(body: str | bytes, **extra: str | bytes) -> dict[str, str | bytes]:
    return {"MessageSid": f"SMhostile{next(_sids):06d}{time.time_ns()}", "From": NUMBER,
            "To": "+15005550006", "Body": body, "NumMedia": "0", **extra}  # fmt: skip


@dataclass
class SmsSender:
    """A phone texting through Twilio. A form carries bytes, so a lone surrogate comes as
    its (invalid) UTF-8 bytes: three replacement characters once decoded."""

    stack: Stack
    stores_lone_surrogate_as: str = "\ufffd" * 3

    def say(self, text: str, **extra: str | bytes) -> list[str]:
        before = len(self.stack.twilio.bodies_to(NUMBER))
        body = text.encode("utf-8", "surrogatepass")
        response = signed_post(self.stack, sms_params(body, **extra))
        assert response.status_code == 200, response.text
        return self.stack.twilio.wait_for(NUMBER, before + 1)[before:]


@dataclass
class TelegramApp:
    stack: Stack
    stores_lone_surrogate_as: str = "\ufffd"
    user: TelegramUser = field(init=False)

    def __post_init__(self) -> None:
        self.user = TelegramUser(self.stack.url, SECRET, self.stack.telegram, CHAT_ID)

    def say(self, text: str) -> list[str]:
        return self.post(self.user.text_update(text))

    def post(self, update: dict[str, Any]) -> list[str]:
        before = len(self.stack.telegram.sent_to(CHAT_ID))
        response = self.user.post_raw(update)
        assert response.status_code == 200, response.text
        self.stack.telegram.wait_for_sent(CHAT_ID, before + 1)
        return self.stack.telegram.texts_to(CHAT_ID)[before:]


CHANNELS: dict[str, Callable[[Stack], Citizen]] = {
    "rest": RestCaller,
    "webchat-post": ChatPoster,
    "webchat-socket": ChatSocket,
    "sms": SmsSender,
    "telegram": TelegramApp,
}


# -- odd text: a polite answer, and the message kept ----------------------------------------


@pytest.mark.parametrize("channel", list(CHANNELS))
@pytest.mark.parametrize(
    ("text", "reply", "stored"),
    [
        pytest.param("", EMPTY, "", id="empty"),
        pytest.param("😀🙏🎉", NO_WORDS, "😀🙏🎉", id="emoji-only"),
        pytest.param("x" * 10_000, TOO_LONG, "x" * 10_000, id="10kB"),
        pytest.param("\ud800 hi", APOLOGY, None, id="lone-surrogate"),
        pytest.param("hello\x00 there", APOLOGY, "hello\ufffd there", id="NUL"),
    ],
)
def test_odd_text_gets_a_polite_reply_and_is_kept(
    stack: Stack, channel: str, text: str, reply: str, stored: str | None
) -> None:
    citizen = CHANNELS[channel](stack)
    assert citizen.say(text) == [reply]
    if stored is None:  # the lone surrogate: replaced, the rest of the message kept
        stored = text.replace("\ud800", citizen.stores_lone_surrogate_as)
    assert stack.inbound() == [stored]


# -- a huge message: refused or answered, and the gateway stays responsive ------------------


def rest_huge(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/channels/rest/webhook",
        json={"sender": "caller-1", "message": "b" * HUGE},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json() == {"detail": [{
        "type": "too_long", "loc": ["body", "message"],
        "msg": "Value should have at most 100000 items after validation, not 300000",
        "ctx": {"field_type": "Value", "max_length": 100000, "actual_length": 300000},
    }]}  # fmt: skip
    assert stack.inbound() == []


def post_huge(stack: Stack) -> None:
    assert ChatPoster(stack).say("b" * HUGE) == [TOO_LONG]
    assert stack.inbound() == []


def socket_huge(stack: Stack) -> None:
    with open_socket(stack.url) as socket:
        socket.send(_json({"message": "b" * HUGE}).decode())
        assert json.loads(socket.recv(timeout=30)) == {"text": TOO_LONG}
        assert stack.inbound() == []
        socket.send(_json({"message": "hello"}).decode())  # the socket is still open
        assert json.loads(socket.recv(timeout=30)) == {"text": APOLOGY}
    assert stack.inbound() == ["hello"]


def sms_huge(stack: Stack) -> None:  # stored, as every signed message is, and answered
    assert SmsSender(stack).say("b" * HUGE) == [TOO_LONG]
    assert stack.inbound() == ["b" * HUGE]


def telegram_huge(stack: Stack) -> None:
    assert TelegramApp(stack).say("b" * HUGE) == [TOO_LONG]
    assert stack.inbound() == ["b" * HUGE]


def healthz_latencies_while(url: str, action: Callable[[], None]) -> list[float]:
    """``action`` in a thread (sending the message and waiting for its answer, or
    refusal), with ``/healthz`` asked over and over until it is done: each one's time."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported by the test below
            failure.append(exc)
        finally:
            done.set()

    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200  # connected before timing
        worker = threading.Thread(target=run)
        worker.start()
        while not done.is_set() or len(latencies) < 10:
            started = time.perf_counter()
            assert client.get("/healthz").json() == {"status": "ok"}
            latencies.append(time.perf_counter() - started)
            done.wait(0.005)
        worker.join()
    if failure:
        raise failure[0]
    return latencies


@pytest.mark.parametrize(
    "send_huge",
    [
        pytest.param(rest_huge, id="rest"),
        pytest.param(post_huge, id="webchat-post"),
        pytest.param(socket_huge, id="webchat-socket"),
        pytest.param(sms_huge, id="sms"),
        pytest.param(telegram_huge, id="telegram"),
    ],
)
def test_a_300k_message_is_answered_and_healthz_keeps_answering(
    stack: Stack, send_huge: Callable[[Stack], None]
) -> None:
    latencies = healthz_latencies_while(stack.url, lambda: send_huge(stack))
    slowest = max(latencies)
    assert slowest < SLOWEST_HEALTHZ, (
        f"/healthz took up to {slowest * 1000:.0f} ms (median "
        f"{statistics.median(latencies) * 1000:.1f} ms, {len(latencies)} probes)"
    )


def test_a_websocket_frame_past_the_body_limit_closes_the_socket(stack: Stack) -> None:
    """uvicorn's ``ws_max_size`` is the body limit (its 16 MiB default would be read
    whole first): a bigger frame closes the socket with 1009, unread by the gateway."""
    with open_socket(stack.url) as socket:
        started = time.perf_counter()
        with pytest.raises(ConnectionClosedError) as closed:
            socket.send(_json({"message": "b" * MAX_BODY_BYTES}).decode())
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert time.perf_counter() - started < 5
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    assert ChatSocket(stack).say("hello") == [APOLOGY]  # a new socket is served
    assert stack.inbound() == ["hello"]


def test_a_body_past_the_limit_is_refused_before_it_is_read(stack: Stack) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    for path, headers in (
        ("/channels/rest/webhook", {"Content-Type": "application/json"}),
        ("/channels/webchat/messages", {"Content-Type": "application/json"}),
        ("/channels/sms/twilio", {"Content-Type": "application/x-www-form-urlencoded"}),
        # With its secret: without it, 403 comes before the body is read, as it should.
        ("/channels/telegram", {"Content-Type": "application/json", SECRET_HEADER: SECRET}),
    ):
        response = httpx.post(stack.url + path, content=big, headers=headers)
        assert response.status_code == 413, path
        assert response.json() == {"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(17):
                yield b"x" * 65_536

        streamed = httpx.post(stack.url + path, content=chunks(), headers=headers)
        assert streamed.status_code == 413, path
    assert stack.inbound() == []


# -- REST -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "replies", "stored"),
    [
        pytest.param(b'{"sender": "c1", "message": "\\ud800 hi"}', 200, [APOLOGY],
                     ["\ufffd hi"], id="lone-surrogate-in-message"),
        pytest.param(b'{"sender": "c1", "message": "hello", "colour": {"odd": [1]}}', 200,
                     [APOLOGY], ["hello"], id="odd-extra-field"),
        pytest.param(b'{"sender": "\\ud800", "message": "hi"}', 422, None, [],
                     id="lone-surrogate-in-sender"),
        pytest.param(b'{"sender": "c\\u0000", "message": "hi"}', 422, None, [],
                     id="NUL-in-sender"),
        pytest.param(b'{"sender": "c1", "message": "hi", "message_id": "\\udfff"}', 422, None,
                     [], id="lone-surrogate-in-message-id"),
        pytest.param(b'{"sender": "c1", "message": 123}', 422, None, [], id="message-not-text"),
        pytest.param(b'{"sender": "c1", "message": "hi"', 422, None, [], id="broken-json"),
        pytest.param(b'\xff\xfe{"sender"}', 422, None, [], id="not-utf8"),
    ],
)  # fmt: skip
def test_rest_bodies(
    stack: Stack, body: bytes, status: int, replies: list[str] | None, stored: list[str]
) -> None:
    response = httpx.post(
        f"{stack.url}/channels/rest/webhook",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    if replies is not None:
        assert [reply["text"] for reply in response.json()] == replies
    else:
        assert response.json()["detail"]  # names the problem...
        assert "input" not in json.dumps(response.json())  # ...without echoing the input
    assert stack.inbound() == stored


def test_a_lone_surrogate_in_a_refused_field_is_named_not_a_500(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/channels/rest/webhook",
        content=b'{"sender": "\\ud800", "message": "hi"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json() == {"detail": [{
        "type": "value_error", "loc": ["body", "sender"],
        "msg": "Value error, contains a lone surrogate or NUL", "ctx": {"error": {}},
    }]}  # fmt: skip


# -- web chat socket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reply", "stored"),
    [
        pytest.param('{"message": "\\ud800 hi"}', APOLOGY, ["\ufffd hi"], id="lone-surrogate"),
        pytest.param("hello", APOLOGY, ["hello"], id="plain-text-frame"),
        pytest.param(b'{"message": "hello"}', APOLOGY, ["hello"], id="binary-frame"),
        pytest.param(b"\xffhello", APOLOGY, ["\ufffdhello"], id="binary-not-utf8"),
        pytest.param("[1, 2]", EMPTY, [""], id="json-not-an-object"),
        pytest.param('{"message": "hello", "colour": "blue"}', APOLOGY, ["hello"],
                     id="odd-extra-field"),
        pytest.param('{"message": NaN}', APOLOGY, ['{"message": NaN}'], id="not-strict-json"),
        pytest.param("[" * 100_000, TOO_LONG, ["[" * 100_000], id="nested-too-deep"),
    ],
)  # fmt: skip
def test_websocket_frames(stack: Stack, frame: str | bytes, reply: str, stored: list[str]) -> None:
    with open_socket(stack.url) as socket:
        socket.send(frame)
        assert json.loads(socket.recv(timeout=30)) == {"text": reply}
        socket.send('{"message": "still there?"}')  # the connection survived
        assert json.loads(socket.recv(timeout=30)) == {"text": APOLOGY}
    assert stack.inbound() == [*stored, "still there?"]


# -- SMS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "extra", "reply", "media"),
    [
        pytest.param("hello", {"NumMedia": "abc"}, APOLOGY, 0, id="NumMedia-not-a-number"),
        pytest.param("", {"NumMedia": "abc", "MediaUrl0": "https://x/1.jpg"}, PICTURES, 1,
                     id="NumMedia-not-a-number-with-media"),
        pytest.param("", {"NumMedia": "9" * 400, "MediaUrl0": "https://x/1.jpg"}, PICTURES, 1,
                     id="NumMedia-huge"),
        pytest.param("", {"NumMedia": "99"}, PICTURES, 10, id="NumMedia-more-than-Twilio-sends"),
        pytest.param("", {"NumMedia": "-1"}, EMPTY, 0, id="NumMedia-negative"),
        pytest.param("hello", {"SmsStatus": "received", "Colour": "blue"}, APOLOGY, 0,
                     id="odd-extra-field"),
        pytest.param(b"\xffhello", {}, APOLOGY, 0, id="not-utf8"),
    ],
)  # fmt: skip
def test_sms_webhooks_with_odd_fields_are_stored_and_answered(
    stack: Stack, body: str | bytes, extra: dict[str, str], reply: str, media: int
) -> None:
    before = len(stack.twilio.bodies_to(NUMBER))
    response = signed_post(stack, sms_params(body, **extra))
    assert response.status_code == 200, response.text
    assert stack.twilio.wait_for(NUMBER, before + 1)[before:] == [reply]
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    sql = "SELECT text, media_count FROM messages WHERE direction='INBOUND'"
    assert query(stack.directory, sql) == [(text, media)]


def test_an_sms_with_a_message_sid_no_twilio_sends_is_refused(stack: Stack) -> None:
    params = {**sms_params("hello"), "MessageSid": "SM" + "x" * 200}
    response = signed_post(stack, params)
    assert response.status_code == 400
    assert response.json() == {"detail": "MessageSid too long"}
    assert stack.inbound() == []


def test_an_sms_phone_from_the_helpers_still_works(stack: Stack) -> None:
    """The doubles' own signed webhook, for comparison with ``signed_post``."""
    phone = SmsPhone(stack.url, PUBLIC, NUMBER, stack.twilio)
    assert phone.text("hello") == APOLOGY


# -- Telegram -------------------------------------------------------------------------------

NOW = int(time.time())
CHAT = {"id": CHAT_ID, "first_name": "Ana", "type": "private"}
FROM = {"id": CHAT_ID, "is_bot": False, "first_name": "Ana", "language_code": "en"}


def message(**fields: Any) -> dict[str, Any]:
    return {"message": {"message_id": 7, "from": FROM, "chat": CHAT, "date": NOW, **fields}}


@pytest.mark.parametrize(
    ("update", "reply", "stored"),
    [
        pytest.param(message(text="\ud800 hi"), APOLOGY, "\ufffd hi", id="lone-surrogate"),
        pytest.param(message(text="hi\x00 there"), APOLOGY, "hi\ufffd there", id="NUL"),
        pytest.param(message(text="hello", colour={"odd": [1]}), APOLOGY, "hello",
                     id="odd-extra-field"),
        pytest.param({**message(text="hello"), "business_message": {"odd": True}}, APOLOGY,
                     "hello", id="odd-extra-update-field"),
        pytest.param(message(text="hello", **{"from": {**FROM, "language_code": 5}}), APOLOGY,
                     "hello", id="language-code-not-text"),
    ],
)  # fmt: skip
def test_telegram_updates_with_odd_content_are_stored_and_answered(
    stack: Stack, update: dict[str, Any], reply: str, stored: str
) -> None:
    assert TelegramApp(stack).post(update) == [reply]
    assert stack.inbound() == [stored]


def no_chat() -> dict[str, Any]:
    update = message(text="hi")
    del update["message"]["chat"]
    return update


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(no_chat(), id="no-chat"),
        pytest.param(message(text="hi", date=10**20), id="huge-date"),
        pytest.param(message(text="hi", date="yesterday"), id="date-not-a-number"),
        pytest.param(message(text=123), id="text-not-text"),
        pytest.param(message(caption=["x"], photo=[]), id="caption-not-text"),
        pytest.param(message(text="hi", chat={**CHAT, "id": 10**30}), id="huge-chat-id"),
        pytest.param(message(text="hi", chat={**CHAT, "id": "abc"}), id="chat-id-not-a-number"),
        pytest.param(message(location={"latitude": "north", "longitude": 1}),
                     id="location-not-a-number"),
        pytest.param({"update_id": 10**30, **message(text="hi")}, id="huge-update-id"),
        pytest.param({"callback_query": {"id": "1", "chat_instance": "1", "data": "1"}},
                     id="callback-from-nobody"),
        pytest.param({"my_chat_member": {"chat": CHAT, "from": FROM, "date": NOW}},
                     id="member-update-without-member"),
        pytest.param({}, id="empty-object"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param(b'{"update_id": 1, "message": ', id="broken-json"),
        pytest.param(b'{"update_id": NaN}', id="NaN"),
        pytest.param(b"[" * 100_000, id="nested-too-deep"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)  # fmt: skip
def test_what_is_not_a_telegram_update_is_refused(stack: Stack, body: Any) -> None:
    content = (
        body
        if isinstance(body, bytes)
        else json.dumps(
            {"update_id": 900_000_001, **body} if isinstance(body, dict) and body else body
        ).encode()
    )
    response = httpx.post(
        stack.url + WEBHOOK_PATH,
        content=content,
        headers={"Content-Type": "application/json", SECRET_HEADER: SECRET},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "not a Telegram update"}
    assert stack.inbound() == []
    assert stack.telegram.sent_to(CHAT_ID) == []
