"""Old buttons pressed late, on Telegram through the real engine: an answered question's
keyboard is taken away (typed or pressed), and a press that arrives anyway is taken by
what it meant — the answer already given is only acknowledged, another option is "no
longer available" with the open question again — never sent to the engine (which would
answer a bare "1" with its out-of-scope fallback)."""

from __future__ import annotations

import re

import pytest

from bot.devstack import StackConfig
from support.servers import ThreadedServer
from support.telegram_double import TelegramDouble, TelegramUser
from tests.e2e.conftest import TELEGRAM_SECRET

pytestmark = pytest.mark.rasa
USER_ID = 555_000_333
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")
GONE = "That option is no longer available."


def plain(sent: dict[str, object]) -> str:
    """What the Telegram user reads (MarkdownV2 escapes removed)."""
    return re.sub(r"\\(.)", r"\1", str(sent["text"]))


def titles(sent: dict[str, object]) -> list[str]:
    markup = sent.get("reply_markup")
    assert isinstance(markup, dict), sent
    return [row[0]["text"] for row in markup["inline_keyboard"]]


def test_answered_keyboards_go_away_and_a_late_press_answers_by_what_it_meant(
    stack: StackConfig, telegram_double: tuple[TelegramDouble, ThreadedServer]
) -> None:
    telegram = telegram_double[0]
    user = TelegramUser(stack.gateway_url, TELEGRAM_SECRET, telegram, USER_ID)
    assert "Birth certificate" in plain(user.text("i need a birth certificate"))
    assert "full name" in plain(user.wait_replies(1)[0])
    for answer, asked in [
        ("Maria Lopez", "date of birth"),
        ("21/03/2019", "born"),
        ("Ottawa", "parent"),
    ]:
        assert asked in plain(user.text(answer))
    summary = user.text("Ana Lopez")
    assert titles(summary) == ["Yes, send it", "Change something"]

    # "Change something", pressed: the summary's keyboard goes, the details are offered.
    assert user.press("Change something").status_code == 200
    which = user.wait_replies(1)[0]
    assert plain(which) == "Which detail would you like to change?"
    telegram.wait_for_call(
        "editMessageReplyMarkup", lambda p: p["message_id"] == summary["message_id"]
    )
    # "Yes, send it" on the old summary: not what was answered. Nothing is filed; the
    # open question comes again, with its options.
    assert user.press("Yes, send it", message=summary).status_code == 200
    gone, again = user.wait_replies(2)
    assert plain(gone) == GONE
    assert plain(again) == "Which detail would you like to change?"
    assert titles(again) == titles(which)
    telegram.wait_for_call(  # the repeated question's keyboard replaces the first one
        "editMessageReplyMarkup", lambda p: p["message_id"] == which["message_id"]
    )

    assert user.press("Place of birth").status_code == 200
    assert "born" in plain(user.wait_replies(1)[0])
    summary = user.text("Toronto")
    assert "Toronto" in plain(summary) and titles(summary) == ["Yes, send it", "Change something"]

    # Typed, not pressed: the keyboard goes all the same.
    done = user.text("yes")
    assert REFERENCE.search(plain(done)), plain(done)
    telegram.wait_for_call(
        "editMessageReplyMarkup", lambda p: p["message_id"] == summary["message_id"]
    )
    sent = len(telegram.sent_to(USER_ID))
    # The same answer pressed late: acknowledged ("already answered"), nothing sent.
    assert user.press("Yes, send it", message=summary).status_code == 200
    telegram.wait_for_call(
        "answerCallbackQuery", lambda p: p.get("text") == "This question was already answered."
    )
    # Another option pressed late: no longer available (no question is open now).
    assert user.press("Change something", message=summary).status_code == 200
    assert [plain(m) for m in user.wait_replies(1)] == [GONE]
    assert len(telegram.sent_to(USER_ID)) == sent + 1  # one application, one notice
