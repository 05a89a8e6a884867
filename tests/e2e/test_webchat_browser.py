"""The web chat page in real headless Chromium (Debian's), through the real stack."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from bot.devstack import StackConfig
from support.browser import chromium

pytestmark = [pytest.mark.rasa, pytest.mark.browser]
REFERENCE = re.compile(r"BC-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, stack: StackConfig) -> Iterator[Page]:
    # A small, old phone: 320 px wide.
    context = browser.new_context(viewport={"width": 320, "height": 568}, locale="en-GB")
    opened = context.new_page()
    opened.goto(stack.gateway_url + "/")
    yield opened
    context.close()


def send(page: Page, text: str) -> None:
    before = page.locator(".msg.bot").count()
    page.fill("#text", text)
    page.click("#send")
    expect(page.locator(".msg.bot")).not_to_have_count(before, timeout=30_000)


def last_bot_text(page: Page) -> str:
    return page.locator(".msg.bot").last.inner_text()


def test_a_citizen_applies_with_buttons_and_typing(page: Page) -> None:
    send(page, "help")
    page.get_by_role("button", name="Apply for a service").click()
    page.get_by_role("button", name="Birth certificate").click()
    expect(page.locator(".msg.bot").last).to_contain_text("full name", timeout=30_000)
    # Answered buttons are disabled so an old choice cannot be sent twice.
    expect(page.get_by_role("button", name="Birth certificate")).to_be_disabled()

    for answer, next_question in [
        ("Maria Lopez", "date of birth"),
        ("21/03/2019", "born"),
        ("Ottawa", "parent"),
        ("Ana Lopez", "Is everything correct?"),
    ]:
        send(page, answer)
        expect(page.locator(".msg.bot").last).to_contain_text(next_question)
    page.get_by_role("button", name="Yes, send it").click()
    expect(page.locator(".msg.bot").last).to_contain_text("Your reference is", timeout=30_000)
    assert REFERENCE.search(last_bot_text(page))
    # The page fits the small screen: nothing wider than the viewport.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


def test_the_conversation_survives_a_reload(page: Page) -> None:
    send(page, "i want to apply for a passport")
    expect(page.locator(".msg.bot").last).to_contain_text("full name")
    page.reload()
    send(page, "John Smith")
    expect(page.locator(".msg.bot").last).to_contain_text("date of birth")


def test_typing_an_answer_greys_out_the_options_it_answered(page: Page) -> None:
    send(page, "i need a birth certificate")
    expect(page.locator(".msg.bot").last).to_contain_text("full name", timeout=30_000)
    for answer in ("Maria Lopez", "21/03/2019", "Ottawa", "Ana Lopez"):
        send(page, answer)
    expect(page.locator(".msg.bot").last).to_contain_text("Is everything correct?")
    expect(page.get_by_role("button", name="Yes, send it")).to_be_enabled()

    send(page, "yes")  # typed, not pressed
    expect(page.locator(".msg.bot").last).to_contain_text("Your reference is", timeout=30_000)
    # The question's options are past: greyed out, and a press sends nothing.
    for name in ("Yes, send it", "Change something"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    expect(page.locator(".buttons button:enabled")).to_have_count(0)
    said = page.locator(".msg.user").count()
    page.get_by_role("button", name="Yes, send it").click(force=True)
    expect(page.locator(".msg.user")).to_have_count(said)
    assert "only help with city services" not in page.locator("#log").inner_text()
