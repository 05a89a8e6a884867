"""Asking for a status on every channel, driven as each provider or browser drives it,
with a Rasa stand-in that plays the status form through the gateway's real actions
(``support.rasa_double``).

Asked "What is your application reference?", the citizen's ``STATUS <reference>`` (any
supported language's STATUS word), the reference alone, or the offered option (the
application this conversation filed, offered first) is the answer: the status is told,
and the question is closed, so the next message is not taken for a reference.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from bot.actions.status import ASK_REFERENCE
from bot.i18n import localizer
from channels.base import menu_line
from service_connectors.catalogue import EXAMPLE_REFERENCE
from support.db import as_datetime, query
from support.driver import ActionDriver
from support.rasa_double import FALLBACK, RasaDouble
from support.servers import serve
from support.stack import SMS_PUBLIC_URL as PUBLIC
from support.stack import TELEGRAM_SECRET as SECRET
from support.stack import ChannelStack as Stack
from support.stack import channel_stack, reference_backend
from support.telegram_double import TelegramUser
from support.twilio_double import SmsPhone

NUMBER = "+15145550100"
CHAT_ID = 777_000_333
WORDS = localizer("en")
ASK = WORDS.gettext(ASK_REFERENCE).format(example=EXAMPLE_REFERENCE)
RECEIVED = (
    "Birth certificate {reference}: Received. The office has your application."
    " It will be checked soon."
)


@dataclass(frozen=True)
class Reply:
    text: str
    options: tuple[str, ...] = ()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    rasa = RasaDouble()
    with (
        reference_backend(tmp_path) as backend,
        serve(rasa.app()) as rasa_server,
        channel_stack(tmp_path, backend.url, rasa_url=rasa_server.url) as running,
    ):
        rasa.gateway_url = running.url
        yield running


# -- the channels ----------------------------------------------------------------------------


class Citizen(Protocol):
    def say(self, text: str) -> list[Reply]: ...

    def choose(self, number: int) -> list[Reply]:
        """Pick the last question's option ``number`` as this channel does."""
        ...


def chat_cookie(url: str) -> str:
    return str(httpx.get(f"{url}/").cookies["civicgate_chat"])


def _json_replies(response: httpx.Response) -> list[Reply]:
    assert response.status_code == 200, response.text
    return [
        Reply(r["text"], tuple(b["title"] for b in r.get("buttons", []))) for r in response.json()
    ]


@dataclass
class RestCaller:
    """The REST channel: the replies in the response; a click sends the payload."""

    stack: Stack
    external_id: str = "caller-1"
    last: list[dict[str, Any]] = field(default_factory=list)

    def post(self, text: str) -> httpx.Response:
        return httpx.post(
            f"{self.stack.url}/channels/rest/webhook",
            json={"sender": self.external_id, "message": text},
            timeout=30,
        )

    def say(self, text: str) -> list[Reply]:
        response = self.post(text)
        self.last = response.json()
        return _json_replies(response)

    def choose(self, number: int) -> list[Reply]:
        return self.say(self.last[-1]["buttons"][number - 1]["payload"])


@dataclass
class ChatPoster(RestCaller):
    """A browser without WebSocket: the POST fallback; a click sends the payload."""

    external_id: str = ""  # the session cookie

    def post(self, text: str) -> httpx.Response:
        self.external_id = self.external_id or chat_cookie(self.stack.url)
        return httpx.post(
            f"{self.stack.url}/channels/webchat/messages",
            json={"message": text},
            headers={"Cookie": f"civicgate_chat={self.external_id}"},
            timeout=30,
        )


@dataclass
class ChatSocket:
    """The web-chat page on its websocket: one frame per reply (one reply per turn here)."""

    stack: Stack
    external_id: str = ""  # the session cookie
    socket: ClientConnection | None = None
    last: dict[str, Any] = field(default_factory=dict)
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def say(self, text: str) -> list[Reply]:
        if self.socket is None:
            url = self.stack.url
            self.external_id = chat_cookie(url)
            socket = connect(
                url.replace("http://", "ws://") + "/channels/webchat/ws",
                additional_headers={
                    "Origin": url,
                    "Cookie": f"civicgate_chat={self.external_id}",
                },
                open_timeout=5,
            )
            self.socket = self.closing.enter_context(socket)
        self.socket.send(json.dumps({"message": text}))
        self.last = json.loads(self.socket.recv(timeout=30))
        return [Reply(self.last["text"], tuple(b["title"] for b in self.last.get("buttons", [])))]

    def choose(self, number: int) -> list[Reply]:
        return self.say(self.last["buttons"][number - 1]["payload"])

    def close(self) -> None:
        self.closing.close()


@dataclass
class SmsSender:
    """A phone: options come as "Reply 1 for …" lines of the one SMS, a digit picks."""

    stack: Stack
    external_id: str = NUMBER

    def say(self, text: str) -> list[Reply]:
        phone = SmsPhone(self.stack.url, PUBLIC, NUMBER, self.stack.twilio)
        return [Reply(phone.text(text))]

    def choose(self, number: int) -> list[Reply]:
        return self.say(str(number))


@dataclass
class TelegramApp:
    stack: Stack
    external_id: str = str(CHAT_ID)
    user: TelegramUser = field(init=False)

    def __post_init__(self) -> None:
        self.user = TelegramUser(self.stack.url, SECRET, self.stack.telegram, CHAT_ID)

    def _replies(self, response: httpx.Response, before: int) -> list[Reply]:
        assert response.status_code == 200, response.text
        sent = self.stack.telegram.wait_for_sent(CHAT_ID, before + 1)[before:]
        texts = self.stack.telegram.texts_to(CHAT_ID)[before:]
        return [
            Reply(text, tuple(b["text"] for row in _keyboard(params) for b in row))
            for text, params in zip(texts, sent, strict=True)
        ]

    def say(self, text: str) -> list[Reply]:
        before = len(self.stack.telegram.sent_to(CHAT_ID))
        return self._replies(self.user.send_text(text), before)

    def choose(self, number: int) -> list[Reply]:
        before = len(self.stack.telegram.sent_to(CHAT_ID))
        return self._replies(self.user.press(number), before)


def _keyboard(params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    markup = params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return list(markup.get("inline_keyboard") or [])


CHANNELS: dict[str, Callable[[Stack], Citizen]] = {
    "rest": RestCaller,
    "webchat-post": ChatPoster,
    "webchat-socket": ChatSocket,
    "sms": SmsSender,
    "telegram": TelegramApp,
}


# -- the citizen's application, filed in this conversation ----------------------------------


def file_application(stack: Stack) -> str:
    """A birth certificate filed in the citizen's conversation, the test's only one
    (through the action endpoint, as Rasa's application form would); its reference."""
    [(conversation_id,)] = query(stack.directory, "SELECT id FROM conversations")
    driver = ActionDriver.__new__(ActionDriver)  # for a conversation a channel started
    driver.url, driver.directory, driver.conversation_id = (
        stack.url,
        stack.directory,
        conversation_id,
    )
    driver.slots, driver.active_loop, driver.events = {}, None, []
    driver.user("birth certificate", "apply_service", service="birth_certificate")
    driver.run("validate_application_form")
    for answer in ("Maria Lopez", "21/03/2019", "Ottawa", "Ana Lopez"):
        driver.user(answer)
        driver.run("validate_application_form", "field_answer")
    driver.user("1")
    driver.run("validate_application_form", "confirmation")
    driver.run("action_submit_application")
    [(reference,)] = query(
        stack.directory, "SELECT coalesce(reference, provisional_reference) FROM applications"
    )
    return str(reference)


def offered(stack: Stack, reference: str) -> str:
    [(created,)] = query(stack.directory, "SELECT created_at FROM applications")
    day = as_datetime(created).astimezone(ZoneInfo("America/Toronto")).date()
    return f"{reference} (your application of {WORDS.date(day)})"


def question(channel: str, option: str) -> Reply:
    """The reference question as this channel shows it, with its one option."""
    if channel == "sms":
        return Reply(f"{ASK}\n{menu_line(WORDS, 1, option)}")
    return Reply(ASK, (option,))


@pytest.mark.parametrize("channel", list(CHANNELS))
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("STATUS {reference}", id="STATUS"),
        pytest.param("statut {lower}", id="French-statut"),
        pytest.param("{reference}", id="the-reference"),
        pytest.param(None, id="the-offered-option"),
    ],
)
def test_the_reference_question_is_answered_by_status_or_the_option(
    stack: Stack, channel: str, answer: str | None
) -> None:
    citizen = CHANNELS[channel](stack)
    try:
        assert citizen.say("hello") == [Reply(FALLBACK)]  # the conversation exists
        reference = file_application(stack)
        assert citizen.say("what is my status") == [question(channel, offered(stack, reference))]
        replies = (
            citizen.choose(1)
            if answer is None
            else citizen.say(answer.format(reference=reference, lower=reference.lower()))
        )
        assert replies == [Reply(RECEIVED.format(reference=reference))]
        assert citizen.say("thanks") == [Reply(FALLBACK)]  # the question is closed
    finally:
        if isinstance(citizen, ChatSocket):
            citizen.close()
