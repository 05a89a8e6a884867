"""One citizen, three devices, through the real engine: an application started on the
web chat, continued and finished on Telegram after a link code (keyboards pressed, the
answered keyboard taken away), then its status asked by SMS from the phone number the
Telegram user shared."""

from __future__ import annotations

import re

import httpx
import pytest

from bot.devstack import StackConfig
from support.servers import ThreadedServer
from support.telegram_double import TelegramDouble, TelegramUser
from support.twilio_double import SmsPhone, TwilioDouble
from tests.e2e.conftest import PUBLIC_BASE_URL, TELEGRAM_SECRET

pytestmark = pytest.mark.rasa
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")
USER_ID = 555_000_222
PHONE = "+15145550177"


def plain(sent: dict[str, object]) -> str:
    """What the Telegram user reads (MarkdownV2 escapes removed)."""
    return re.sub(r"\\(.)", r"\1", str(sent["text"]))


def test_web_chat_then_telegram_then_sms(
    stack: StackConfig,
    telegram_double: tuple[TelegramDouble, ThreadedServer],
    twilio_double: tuple[TwilioDouble, ThreadedServer],
) -> None:
    telegram = telegram_double[0]
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as browser:
        browser.get("/").raise_for_status()  # the page issues the chat session cookie

        def chat(text: str) -> str:
            response = browser.post("/channels/webchat/messages", json={"message": text})
            response.raise_for_status()
            return "\n".join(reply["text"] for reply in response.json())

        assert "full name" in chat("i need a birth certificate")
        assert "date of birth" in chat("Maria Lopez")
        found = re.search(r"LINK (\d{6})", chat("link"))
        assert found is not None

    user = TelegramUser(stack.gateway_url, TELEGRAM_SECRET, telegram, USER_ID)
    assert user.send_text(f"LINK {found.group(1)}").status_code == 200
    linked, question = (plain(m) for m in user.wait_replies(2))
    assert "linked" in linked and "date of birth" in question  # where the web chat stopped
    assert "born" in plain(user.text("21/03/2019"))
    assert "parent" in plain(user.text("Ottawa"))
    summary = user.text("Ana Lopez")
    assert "Maria Lopez" in plain(summary)
    titles = [row[0]["text"] for row in summary["reply_markup"]["inline_keyboard"]]
    assert titles[0] == "Yes, send it"

    assert user.press(1).status_code == 200
    done = plain(user.wait_replies(1)[0])
    reference = REFERENCE.search(done)
    assert reference is not None, done
    assert telegram.wait_for_call("answerCallbackQuery").get("text") is None
    removed = telegram.wait_for_call(
        "editMessageReplyMarkup", lambda p: p["message_id"] == summary["message_id"]
    )
    assert not removed.get("reply_markup", {}).get("inline_keyboard")

    sent_before = len(telegram.sent_to(USER_ID))
    assert user.press(1, message=summary).status_code == 200  # the old keyboard, again
    stale = telegram.wait_for_call(
        "answerCallbackQuery", lambda p: "already answered" in str(p.get("text"))
    )
    assert stale
    assert len(telegram.sent_to(USER_ID)) == sent_before  # no second application

    user.share_contact(PHONE)
    assert "shown here too" in plain(user.wait_replies(1)[0])
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, PHONE, twilio_double[0])
    status = phone.text(f"STATUS {reference.group(1)}")
    assert "Birth certificate" in status and "Received" in status


def test_a_pothole_reported_on_telegram_with_a_shared_location(
    stack: StackConfig, telegram_double: tuple[TelegramDouble, ThreadedServer]
) -> None:
    user = TelegramUser(stack.gateway_url, TELEGRAM_SECRET, telegram_double[0], USER_ID + 1)
    assert "Pothole report" in plain(user.text("i want to report a pothole"))
    assert "Where is the pothole" in plain(user.wait_replies(1)[0])
    assert user.send_location(45.42153, -75.69719).status_code == 200
    size = user.wait_replies(1)[0]
    assert "How big" in plain(size)
    assert size["reply_markup"]["inline_keyboard"][0][0]["text"] == "Smaller than a plate"
    user.press("About a tyre wide")
    summary = plain(user.wait_replies(1)[0])
    assert "45.42153, -75.69719" in summary and "About a tyre wide" in summary
