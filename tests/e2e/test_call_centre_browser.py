"""The call-centre console in real headless Chromium, against the whole stack: an SMS
citizen asks for a person, an agent claims and answers from the console, hands back,
and the bot (real Rasa) answers the citizen again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from bot.devstack import StackConfig
from bot.settings import PROJECT_ROOT
from support.browser import chromium
from support.servers import ThreadedServer
from support.twilio_double import SmsPhone, TwilioDouble
from tests.e2e.conftest import PUBLIC_BASE_URL

pytestmark = [pytest.mark.rasa, pytest.mark.browser]
PASSWORD = "correct horse battery"


def create_agent(stack: StackConfig, username: str, team: str) -> None:
    """With the project's own command, against the stack's database."""
    subprocess.run(
        [sys.executable, "-m", "bot.console", "create-staff", username, "--name", "Ada Agent",
         "--role", "agent", "--team", team, "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True, cwd=PROJECT_ROOT,
        env=stack.gateway_env(), capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def agent(stack: StackConfig) -> str:
    create_agent(stack, "ada", "general")
    return "ada"


@pytest.fixture
def console(browser: Browser, stack: StackConfig, agent: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.goto(stack.gateway_url + "/console")  # not signed in: sent to the login form
    expect(page).to_have_url(stack.gateway_url + "/console/login")
    page.fill("#username", agent)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    yield page
    context.close()


def test_agent_takes_over_an_sms_conversation_and_hands_back(
    console: Page, stack: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double = twilio_double[0]
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550177", double)
    assert "Reply 1 for" in phone.text("HELP")

    # The agent's queue page is open (so they are online): the citizen is queued live.
    queued = phone.text("I want to talk to a human")
    assert "number 1 in the queue" in queued, queued

    # The row appears without reloading (server-sent events), then the agent claims it.
    row = console.locator("#queue tbody tr[data-handoff]")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_contain_text("sms")
    row.get_by_role("link", name="Open").click()
    expect(console.locator("#transcript")).to_contain_text("I want to talk to a human")
    expect(console.locator("#transcript .intent").first).to_be_visible()  # what NLU understood
    console.click("#claim")
    expect(console.locator("#handoff-status")).to_contain_text("claimed")

    # While claimed, the bot is silent: the citizen's words reach only the agent, live.
    sent = len(double.bodies_to(phone.number))
    assert phone.post("My birth certificate has a typo").status_code == 200
    expect(console.locator("#transcript")).to_contain_text("has a typo", timeout=15_000)

    # The agent's reply arrives at the Twilio double, as an SMS to the citizen.
    console.fill("#reply-text", "Hello, I am Ada. I will correct it for you today.")
    console.click("#send-reply")
    bodies = double.wait_for(phone.number, sent + 1)
    assert bodies[sent] == "Hello, I am Ada. I will correct it for you today."
    assert len(double.bodies_to(phone.number)) == sent + 1  # and nothing from the bot

    console.click("#hand-back")
    handed_back = double.wait_for(phone.number, sent + 2)[sent + 1]
    assert "back with our automated assistant" in handed_back
    assert "1 (poor) to 5 (very good)" in handed_back

    assert "Thank you for your feedback" in phone.text("5")
    # The bot (real Rasa) answers again.
    assert "Reply 1 for Apply for a service" in phone.text("help")


def test_closing_ends_the_open_form_and_the_bot_starts_afresh(
    console: Page, stack: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double = twilio_double[0]
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550178", double)
    phone.text("HELP")
    phone.text("1")  # apply
    assert "full name" in phone.text("1")  # birth certificate: the form asks a question
    queued = phone.text("PERSON")  # the keyword, in the middle of the form
    assert "number 1 in the queue" in queued, queued

    row = console.locator("#queue tbody tr[data-handoff]")
    expect(row).to_have_count(1, timeout=15_000)
    row.get_by_role("link", name="Open").click()
    expect(console.locator("aside")).to_contain_text("Birth certificate")  # the draft
    console.click("#claim")
    console.select_option("#outcome", "information_given")
    console.get_by_role("button", name="Close the conversation").click()
    expect(console.locator("#handoff-status")).to_contain_text("closed")

    sent = len(double.bodies_to(phone.number))
    closed = double.wait_for(phone.number, sent)[sent - 1]
    assert "closed this conversation" in closed and "1 (poor) to 5" in closed
    # Rasa's form was ended: a greeting, not the form asking which service again.
    greeting = phone.text("hi")
    assert greeting.startswith("Hello!") and "Which service" not in greeting, greeting


def test_a_hand_back_mid_form_asks_its_question_again_and_takes_the_next_answer(
    console: Page, stack: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer]
) -> None:
    double = twilio_double[0]
    phone = SmsPhone(stack.gateway_url, PUBLIC_BASE_URL, "+15145550179", double)
    started = phone.text("i need a birth certificate")
    assert "What is the child's full name? (1 of 4)" in started, started
    date_question = phone.text("Maria Lopez")
    assert date_question == "What is the child's date of birth? (2 of 4)", date_question
    assert "number 1 in the queue" in phone.text("PERSON")

    row = console.locator("#queue tbody tr[data-handoff]")
    expect(row).to_have_count(1, timeout=15_000)
    row.get_by_role("link", name="Open").click()
    console.click("#claim")
    expect(console.locator("#handoff-status")).to_contain_text("claimed")
    sent = len(double.bodies_to(phone.number))
    console.fill("#reply-text", "What is the correct name?")
    console.click("#send-reply")
    assert double.wait_for(phone.number, sent + 1)[sent] == "What is the correct name?"
    assert phone.post("Maria Lopes").status_code == 200  # answered to the agent
    expect(console.locator("#transcript")).to_contain_text("Maria Lopes", timeout=15_000)

    console.click("#hand-back")
    expect(console.locator("#handoff-status")).to_contain_text("closed")
    # One message: the assistant is back, and the open question again (no rating).
    handed_back = double.wait_for(phone.number, sent + 2)[sent + 1]
    assert handed_back == (
        "You are back with our automated assistant. Let us continue where we stopped:\n"
        "What is the child's date of birth? (2 of 4)"
    )
    # The next message answers that question: the form goes on to the next one.
    assert phone.text("21/03/2019") == "Where was the child born (town or city)? (3 of 4)"
    assert len(double.bodies_to(phone.number)) == sent + 3  # and nothing else was sent
