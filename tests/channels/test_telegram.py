"""The Telegram channel: real gateway, real python-telegram-bot, a Bot API double on loopback.

Rasa is down here on purpose: what the channel owns (the secret token, duplicates, media,
contacts, blocked users, set-up commands) must work without the engine. Keyboards and a
whole application over Telegram run against the real engine in tests/e2e.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from channels.telegram.__main__ import poll, register_webhook
from channels.telegram.sender import make_bot
from channels.telegram.text import escape, split_text
from support.db import query, settled
from support.servers import ThreadedServer, serve
from support.stack import gateway, gateway_settings
from support.telegram_double import BOT_TOKEN, TelegramDouble, TelegramUser

SECRET = "test-telegram-secret_1"
USER_ID = 777_000_111


def telegram_settings(double_url: str) -> dict[str, Any]:
    return {
        "telegram_bot_token": BOT_TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": double_url,
        "worker_interval_seconds": 0.2,
        "delivery_retry_base_seconds": 0.1,
    }


@pytest.fixture
def double() -> Iterator[tuple[TelegramDouble, ThreadedServer]]:
    telegram = TelegramDouble()
    with serve(telegram.app()) as server:
        yield telegram, server


@pytest.fixture
def settings(tmp_path: Path, double: tuple[TelegramDouble, ThreadedServer]) -> Settings:
    return gateway_settings(tmp_path, "http://127.0.0.1:9", **telegram_settings(double[1].url))


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with gateway(settings) as running:
        yield running


@pytest.fixture
def user(server: ThreadedServer, double: tuple[TelegramDouble, ThreadedServer]) -> TelegramUser:
    return TelegramUser(server.url, SECRET, double[0], USER_ID)


def inbound_count(tmp_path: Path) -> int:
    return int(query(tmp_path, "SELECT count(*) FROM messages WHERE direction='INBOUND'")[0][0])


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        pytest.param(SECRET, 200, id="right secret"),
        pytest.param("another-secret", 403, id="wrong secret"),
        pytest.param(SECRET[:-1], 403, id="prefix of the secret"),
        pytest.param(None, 403, id="no secret"),
    ],
)
def test_the_secret_token_is_required(
    user: TelegramUser,
    double: tuple[TelegramDouble, ThreadedServer],
    tmp_path: Path,
    secret: str | None,
    status: int,
) -> None:
    response = user.post_raw(user.text_update("hello"), secret=secret)
    assert response.status_code == status
    if status == 200:
        assert "cannot answer right now" in double[0].wait_for_sent(USER_ID, 1)[0]["text"]
        assert inbound_count(tmp_path) == 1
    else:
        time.sleep(0.5)
        assert inbound_count(tmp_path) == 0
        assert double[0].sent_to(USER_ID) == []


def test_a_repeated_update_is_answered_once(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    update = user.text_update("hello")
    for _ in range(3):
        assert user.post_raw(update).status_code == 200
    double[0].wait_for_sent(USER_ID, 1)
    time.sleep(0.6)
    assert len(double[0].sent_to(USER_ID)) == 1
    assert inbound_count(tmp_path) == 1


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        pytest.param(lambda u: u.send_photo(), "only read text", id="photo"),
        pytest.param(lambda u: u.send_photo(caption="look"), "only read text", id="photo+caption"),
        pytest.param(lambda u: u.send_voice(), "only read text", id="voice"),
        pytest.param(lambda u: u.send_sticker(), "only read text", id="sticker"),
        pytest.param(lambda u: u.edit_text(1, "fixed"), "new message", id="edited"),
        pytest.param(
            lambda u: u.send_location(45.4215, -75.6972), "where something is", id="location"
        ),
        pytest.param(lambda u: u.send_text("😀🙏"), "only read words", id="emoji only"),
        pytest.param(lambda u: u.send_text("x" * 5000), "too long", id="5000 characters"),
    ],
)
def test_what_is_not_a_question_gets_a_clear_reply(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], send: Any, expected: str
) -> None:
    assert send(user).status_code == 200
    assert expected in double[0].wait_for_sent(USER_ID, 1)[0]["text"].replace("\\", "")


def test_start_offers_to_share_the_phone_number(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer]
) -> None:
    user.send_text("/start")
    offer = double[0].wait_for_sent(USER_ID, 2)[1]
    keyboard = offer["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    assert "Share my phone number" in keyboard[0][0]["text"]


def test_someone_elses_contact_is_refused(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    user.share_contact("+1 514 555 0199", user_id=USER_ID + 1)
    reply = double[0].wait_for_sent(USER_ID, 1)[0]
    assert "your own phone number" in reply["text"].replace("\\", "")
    assert reply["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert query(tmp_path, "SELECT * FROM channel_identities WHERE channel='sms'") == []


def test_ones_own_contact_links_the_phone_number(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    user.share_contact("+1 514 555 0199")
    assert "shown here too" in double[0].wait_for_sent(USER_ID, 1)[0]["text"].replace("\\", "")
    rows = query(
        tmp_path,
        "SELECT channel, external_id, citizen_id FROM channel_identities ORDER BY channel",
    )
    assert [(channel, external) for channel, external, _ in rows] == [
        ("sms", "+15145550199"),
        ("telegram", str(USER_ID)),
    ]
    assert rows[0][2] == rows[1][2]  # one citizen


def test_a_user_who_blocked_the_bot_is_not_retried_until_they_write_again(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    double[0].blocked.add(USER_ID)
    user.send_text("hello")
    double[0].wait_for_call("sendMessage")
    time.sleep(1.5)  # several worker rounds: nothing is tried again
    assert len(double[0].calls_of("sendMessage")) == 1
    assert query(tmp_path, "SELECT status, error_code FROM deliveries") == [("failed", "403")]
    assert query(tmp_path, "SELECT unreachable_at IS NOT NULL FROM channel_identities") == [(1,)]
    double[0].blocked.discard(USER_ID)
    user.send_text("hello again")
    assert "cannot answer right now" in double[0].wait_for_sent(USER_ID, 1)[0]["text"]
    assert query(tmp_path, "SELECT unreachable_at FROM channel_identities") == [(None,)]


def test_a_temporary_failure_is_retried(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    double[0].failures.extend([502, 429])  # the double asks to wait 1 s on 429
    started = time.monotonic()
    user.send_text("hello")
    double[0].wait_for_sent(USER_ID, 1, timeout=15)
    assert time.monotonic() - started >= 1.0  # not before Telegram's retry_after
    assert len(double[0].calls_of("sendMessage")) == 3
    rows = settled(tmp_path, "SELECT status, attempts FROM deliveries", [("accepted", 3)])
    assert rows == [("accepted", 3)]


def test_long_text_is_split_under_the_limit_and_escaped() -> None:
    sentence = "Bring form BC-7 (two copies), the fee is $12.50! Questions? Call 3-1-1. "
    text = sentence * 150  # about 11 000 characters, full of reserved characters
    parts = split_text(text)
    assert len(parts) >= 3
    assert all(len(escape(part)) <= 4096 for part in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)
    assert split_text("short.") == ["short."]


def test_webhook_registration_sends_the_secret_and_the_updates_we_serve(
    double: tuple[TelegramDouble, ThreadedServer], settings: Settings
) -> None:
    settings = settings.model_copy(update={"public_base_url": "https://civicgate.example.org"})
    url = asyncio.run(register_webhook(settings, make_bot(settings)))
    assert url == "https://civicgate.example.org/channels/telegram"
    call = double[0].calls_of("setWebhook")[-1]
    assert call["url"] == url
    assert call["secret_token"] == SECRET
    assert set(call["allowed_updates"]) == {
        "message", "edited_message", "callback_query", "my_chat_member"
    }  # fmt: skip


def test_polling_forwards_updates_to_the_gateway(
    server: ThreadedServer,
    user: TelegramUser,
    double: tuple[TelegramDouble, ThreadedServer],
    settings: Settings,
) -> None:
    double[0].queue_update(user.text_update("hello from polling"))
    forwarded = asyncio.run(poll(settings, make_bot(settings), server.url, rounds=2, wait=0))
    assert forwarded == 1
    assert "cannot answer right now" in double[0].wait_for_sent(USER_ID, 1)[0]["text"]
    assert double[0].calls_of("deleteWebhook")


def test_blocking_and_unblocking_the_bot_is_recorded_without_a_reply(
    user: TelegramUser, double: tuple[TelegramDouble, ThreadedServer], tmp_path: Path
) -> None:
    def member_update(old: str, new: str) -> dict[str, Any]:
        bot = {"id": 123456, "is_bot": True, "first_name": "CivicGate Test"}

        def member(status: str) -> dict[str, Any]:  # Telegram sends until_date for "kicked"
            return {
                "user": bot,
                "status": status,
                **({"until_date": 0} if status == "kicked" else {}),
            }

        return {"my_chat_member": {
            "chat": user.chat, "from": user.user, "date": int(time.time()),
            "old_chat_member": member(old), "new_chat_member": member(new),
        }}  # fmt: skip

    unreachable = "SELECT unreachable_at IS NOT NULL FROM channel_identities"
    assert user.post_raw(member_update("member", "kicked")).status_code == 200
    assert settled(tmp_path, unreachable, [(1,)]) == [(1,)]
    assert user.post_raw(member_update("kicked", "member")).status_code == 200
    assert settled(tmp_path, unreachable, [(0,)]) == [(0,)]
    assert double[0].calls_of("sendMessage") == []
