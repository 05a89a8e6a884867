"""A supervisor, in real headless Chromium, finds an application the office refused in
the console's "Needs attention" list and retries it; the gateway's own retry loop
(bot.submissions) then files it with the reference backend. No Rasa is needed: the
citizen's conversation and the stuck application are put in the database directly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from bot.db.models import StaffRole
from support.browser import chromium
from support.db import query, wait_until
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings, reference_backend
from tests.bot.test_console_api import PASSWORD, add_staff
from tests.bot.test_needs_attention_console import citizen_conversation, stuck

pytestmark = [pytest.mark.browser]


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ThreadedServer]:
    with reference_backend(tmp_path) as server:
        yield server


def test_a_supervisor_sees_the_refused_application_and_retries_it(
    backend: ThreadedServer, tmp_path: Path
) -> None:
    settings = gateway_settings(
        tmp_path,
        backend.url,
        worker_interval_seconds=0.2,  # the retry loop runs soon after the click
        needs_attention_alert_minutes=100_000,
    )
    with gateway(settings) as server:
        add_staff(settings, "sue", StaffRole.SUPERVISOR, teams=())
        conversation = citizen_conversation(server, settings, "+15145550160")
        application = stuck(
            settings,
            conversation,
            "BC-BRWS22",
            timedelta(hours=2),
            status=422,
            excerpt="<b>date</b> rejected",
        )
        # Playwright's sync API runs an event loop in this thread: set up before it starts.
        with chromium() as browser:
            supervise(browser, server, tmp_path, application)


def supervise(browser: Browser, server: ThreadedServer, tmp_path: Path, application: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    try:
        page.goto(server.url + "/console")
        expect(page).to_have_url(server.url + "/console/login")
        page.fill("#username", "sue")
        page.fill("#password", PASSWORD)
        page.click("#sign-in")
        expect(page.get_by_role("heading", name="Queue")).to_be_visible()

        page.click("#nav-attention")
        expect(page.get_by_role("heading", name="Needs attention")).to_be_visible()
        row = page.locator(f'#attention tr[data-application="{application}"]')
        expect(row).to_have_count(1)
        expect(row.locator(".reference")).to_have_text("BC-BRWS22")
        expect(row).to_contain_text("Birth certificate")
        expect(row).to_contain_text("Refused by the office")
        expect(row).to_contain_text("2 hours ago")
        # The backend's words are shown as text, never as markup.
        expect(row.locator(".answer")).to_have_text("HTTP 422 · <b>date</b> rejected")
        expect(row.locator(".answer b")).to_have_count(0)

        row.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_have_text(
            "Application BC-BRWS22 is back with the retries."
        )
        expect(page.locator("#attention tbody")).to_have_text("No application needs attention.")

        # The retry loop takes it from there: the reference backend accepts it.
        def filed() -> bool:
            sql = "SELECT stage FROM applications WHERE id = :id"
            return query(tmp_path, sql, id=application) == [("received",)]

        wait_until(filed)
        ((attempts, since, audited),) = query(
            tmp_path,
            "SELECT submit_attempts, needs_attention_since,"
            " (SELECT count(*) FROM audit_log WHERE action = 'attention_retry')"
            " FROM applications WHERE id = :id",
            id=application,
        )
        assert (attempts, since, audited) == (1, None, 1)
    finally:
        context.close()
