"""The Telegram double against the real python-telegram-bot client.

Gateway tests trust the double to answer as Telegram does; these check it does so for the
client the gateway uses, and that TelegramUser's updates parse as real ones (PTB's
``Update.de_json`` is the judge of field names).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
import telegram
from fastapi import FastAPI, Request
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.helpers import escape_markdown

from support.servers import ThreadedServer, serve
from support.telegram_double import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USERNAME,
    SECRET_HEADER,
    TelegramDouble,
    TelegramUser,
)

CHAT = 4242
T = TypeVar("T")

KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("Yes", callback_data="confirm:yes")],
        [InlineKeyboardButton("No", callback_data="confirm:no")],
    ]
)


@pytest.fixture
def telegram_api() -> Iterator[tuple[TelegramDouble, ThreadedServer]]:
    double = TelegramDouble()
    with serve(double.app()) as server:
        yield double, server


def with_bot(
    server: ThreadedServer,
    use: Callable[[Bot], Awaitable[T]],
    token: str = BOT_TOKEN,
) -> T:
    """Run ``use`` with an initialized real PTB Bot pointed at the double."""

    async def run() -> T:
        bot = Bot(token, base_url=server.url + "/bot")
        try:  # a failed initialize leaves PTB's httpx clients open: shut down regardless
            await bot.initialize()
            return await use(bot)
        finally:
            await bot.shutdown()

    return asyncio.run(run())


def test_get_me_and_send_message_with_keyboard(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
) -> None:
    double, server = telegram_api
    text = escape_markdown("Your request (no. 7) is filed - thanks!", version=2)

    async def use(bot: Bot) -> tuple[telegram.Message, telegram.Message]:
        first = await bot.send_message(CHAT, text, parse_mode="MarkdownV2", reply_markup=KEYBOARD)
        second = await bot.send_message(CHAT, "plain")
        return first, second

    first, second = with_bot(server, use)

    assert double.calls[0] == ("getMe", {})
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.chat.id == CHAT and first.chat.type == "private"
    assert first.from_user is not None and first.from_user.username == BOT_USERNAME
    assert first.text == "Your request (no. 7) is filed - thanks!"
    assert first.reply_markup == KEYBOARD
    assert second.reply_markup is None

    sent = double.sent_to(CHAT)
    assert sent[0]["chat_id"] == CHAT
    assert sent[0]["text"] == text
    assert sent[0]["message_id"] == 1
    assert sent[0]["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "confirm:yes"}],
            [{"text": "No", "callback_data": "confirm:no"}],
        ]
    }
    assert double.texts_to(CHAT) == ["Your request (no. 7) is filed - thanks!", "plain"]


def test_unescaped_reserved_character_is_rejected(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
) -> None:
    double, server = telegram_api

    async def use(bot: Bot) -> None:
        await bot.send_message(CHAT, "Office hours: 9-17", parse_mode="MarkdownV2")

    with pytest.raises(BadRequest, match=r"(?i)character '-' is reserved"):
        with_bot(server, use)
    assert double.sent_to(CHAT) == []
    assert len(double.calls_of("sendMessage")) == 1  # the attempt is still recorded


def test_escaped_text_and_formatting_pass(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
) -> None:
    _, server = telegram_api
    tricky = "C:\\forms_2024 *v1.2* [draft] (a+b=c) ~x~ `q` > #1 | {ok} !"
    text = "*" + escape_markdown("Notice", version=2) + "* " + escape_markdown(tricky, version=2)

    async def use(bot: Bot) -> telegram.Message:
        return await bot.send_message(CHAT, text, parse_mode="MarkdownV2")

    message = with_bot(server, use)
    assert message.text == "Notice " + tricky
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 6)]


def test_blocked_chat_is_forbidden(telegram_api: tuple[TelegramDouble, ThreadedServer]) -> None:
    double, server = telegram_api
    double.blocked.add(CHAT)

    async def use(bot: Bot) -> None:
        await bot.send_message(CHAT, "hello")

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        with_bot(server, use)


def test_wrong_token_is_rejected(telegram_api: tuple[TelegramDouble, ThreadedServer]) -> None:
    double, server = telegram_api

    async def use(bot: Bot) -> None:
        raise AssertionError("initialize should have failed")

    with pytest.raises(InvalidToken, match="was rejected by the server"):
        with_bot(server, use, token="654321:wrong-token")
    assert double.calls == []
    response = httpx.post(f"{server.url}/bot{BOT_TOKEN}/noSuchMethod", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_message_length_counts_parsed_text(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
) -> None:
    double, server = telegram_api
    fits = "\\." * 4096  # 8192 characters sent, 4096 after parsing

    async def use(bot: Bot) -> None:
        await bot.send_message(CHAT, fits, parse_mode="MarkdownV2")
        await bot.send_message(CHAT, "x" * 4097)

    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        with_bot(server, use)
    assert double.texts_to(CHAT) == ["." * 4096]

    async def empty(bot: Bot) -> None:
        await bot.send_message(CHAT, "  ")

    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        with_bot(server, empty)


def test_get_updates_returns_queued_updates_once(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
) -> None:
    double, server = telegram_api
    user = TelegramUser("http://127.0.0.1:9", "unused", double, user_id=CHAT)
    first = double.queue_update(user.text_update("/start"))
    double.queue_update(user.text_update("hello"))

    async def use(bot: Bot) -> tuple[Any, ...]:
        updates = await bot.get_updates(timeout=0)
        started = time.monotonic()
        again = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=5)
        return updates, again, time.monotonic() - started

    updates, again, waited = with_bot(server, use)
    assert [u.update_id for u in updates] == [first["update_id"], first["update_id"] + 1]
    assert [u.message.text for u in updates] == ["/start", "hello"]
    assert updates[0].message.entities[0].type == "bot_command"
    assert again == ()
    assert waited < 3  # an empty long poll is capped at 1 s


def test_failures_callbacks_keyboard_edits_and_webhook(
    telegram_api: tuple[TelegramDouble, ThreadedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    double, server = telegram_api
    # PTB 22 warns (an error here) on reading an int RetryAfter.retry_after unless opted in.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    double.failures.extend([429, 500])
    arrivals: list[dict[str, Any]] = []
    double.on_send = arrivals.append

    async def use(bot: Bot) -> dict[str, Any]:
        with pytest.raises(RetryAfter) as retry:
            await bot.send_message(CHAT, "one")
        assert retry.value.retry_after == timedelta(seconds=1)
        with pytest.raises(NetworkError):
            await bot.send_message(CHAT, "one")
        sent = await bot.send_message(CHAT, "one", reply_markup=KEYBOARD)
        edited = await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=None)
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=None)
        assert await bot.answer_callback_query("77", text="Noted")
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query("77")
        too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x" * 65)]])
        with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
            await bot.send_message(CHAT, "two", reply_markup=too_long)
        secret = "s3cret_-token"
        assert await bot.set_webhook(
            "https://gw.example.org/channels/telegram",
            secret_token=secret,
            allowed_updates=["message", "callback_query"],
        )
        info = await bot.get_webhook_info()
        with pytest.raises(telegram.error.Conflict):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert isinstance(edited, telegram.Message)
        return {"info": info, "secret": secret}

    result = with_bot(server, use)
    assert [p["text"] for p in arrivals] == ["one"]
    assert len(double.calls_of("sendMessage")) == 4
    assert "reply_markup" not in double.messages_to(CHAT)[0]
    assert double.wait_for_call("answerCallbackQuery")["text"] == "Noted"
    webhook = double.calls_of("setWebhook")[0]
    assert webhook["secret_token"] == result["secret"]
    assert webhook["allowed_updates"] == ["message", "callback_query"]
    assert result["info"].url == "https://gw.example.org/channels/telegram"
    assert double.webhook == {}


@pytest.fixture
def fake_gateway() -> Iterator[tuple[list[tuple[str | None, dict[str, Any]]], ThreadedServer]]:
    """A webhook that only records what it is posted, to inspect TelegramUser's updates."""
    received: list[tuple[str | None, dict[str, Any]]] = []
    app = FastAPI()

    @app.post("/channels/telegram")
    async def webhook(request: Request) -> dict[str, bool]:
        received.append((request.headers.get(SECRET_HEADER), await request.json()))
        return {"ok": True}

    with serve(app) as server:
        yield received, server


def test_telegram_user_updates_parse_as_real_ones(
    telegram_api: tuple[TelegramDouble, ThreadedServer],
    fake_gateway: tuple[list[tuple[str | None, dict[str, Any]]], ThreadedServer],
) -> None:
    double, api = telegram_api
    received, gateway = fake_gateway
    user = TelegramUser(gateway.url, "hook-secret", double, user_id=CHAT)

    async def send(bot: Bot) -> telegram.Message:
        return await bot.send_message(CHAT, "Pick one", reply_markup=KEYBOARD)

    shown = with_bot(api, send)
    assert user.send_text("hello").status_code == 200
    assert user.press("No").status_code == 200
    assert user.press(1, double.sent_to(CHAT)[0]).status_code == 200
    user.share_contact("+15145550100")
    user.share_contact("+15145550199", user_id=999)
    user.send_photo()
    user.send_voice()
    user.send_sticker()
    user.send_location(45.5017, -73.5673)
    user.edit_text(2, "hello again")
    user.post_raw({"message": {}}, secret=None)
    user.post_raw({"message": {}}, secret="wrong")

    secrets = [secret for secret, _ in received]
    assert secrets[:-2] == ["hook-secret"] * 10 and secrets[-2:] == [None, "wrong"]
    updates = [telegram.Update.de_json(body, None) for _, body in received[:-2]]
    assert len({u.update_id for u in updates}) == 10
    text, no, yes, own, other, photo, voice, sticker, location, edited = updates

    assert text.message is not None and text.message.text == "hello"
    assert text.message.chat.id == CHAT and text.message.from_user is not None
    assert text.message.message_id == shown.message_id + 1  # one numbering per chat
    assert no.callback_query is not None and no.callback_query.data == "confirm:no"
    assert yes.callback_query is not None and yes.callback_query.data == "confirm:yes"
    echoed = no.callback_query.message
    assert isinstance(echoed, telegram.Message) and echoed.message_id == shown.message_id
    assert echoed.from_user is not None and echoed.from_user.id == BOT_ID
    assert echoed.reply_markup == KEYBOARD
    assert no.callback_query.id != yes.callback_query.id
    assert own.message is not None and own.message.contact is not None
    assert own.message.contact.user_id == CHAT
    assert other.message is not None and other.message.contact is not None
    assert other.message.contact.user_id == 999
    assert photo.message is not None and photo.message.photo and photo.message.text is None
    assert voice.message is not None and voice.message.voice is not None
    assert sticker.message is not None and sticker.message.sticker is not None
    assert location.message is not None and location.message.location is not None
    assert location.message.location.latitude == pytest.approx(45.5017)
    assert edited.edited_message is not None and edited.edited_message.text == "hello again"


def test_text_waits_for_the_reply(telegram_api: tuple[TelegramDouble, ThreadedServer]) -> None:
    """TelegramUser.text against a gateway that answers every message through the double."""
    double, api = telegram_api
    app = FastAPI()

    @app.post("/channels/telegram")
    async def webhook(request: Request) -> dict[str, bool]:
        update = await request.json()
        chat = update["message"]["chat"]["id"]
        async with httpx.AsyncClient() as client:
            for text in (f"echo: {update['message']['text']}", "anything else?"):
                url = f"{api.url}/bot{BOT_TOKEN}/sendMessage"
                await client.post(url, json={"chat_id": chat, "text": text})
        return {"ok": True}

    with serve(app) as gateway:
        user = TelegramUser(gateway.url, "s", double, user_id=CHAT)
        assert user.text("hi")["text"] == "echo: hi"
        assert [r["text"] for r in user.wait_replies(1)] == ["anything else?"]
        assert user.text("bye")["text"] == "echo: bye"
