"""One real browser: Chromium logs in to the admin on a live server and opens a transcript with a
tool call. The screenshot is kept in test-artifacts/ for a human to look at."""

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.test_session_browser import session_with_tool_call

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.mark.browser
def test_operator_opens_a_transcript_with_a_tool_call_in_chromium(live_server, django_user_model, process_store):
    django_user_model.objects.create_superuser("operator", "operator@example.com", "a-long-browser-password")
    session, run = session_with_tool_call(process_store)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "session-transcript.png"
    screenshot.unlink(missing_ok=True)

    # Playwright's sync API runs an event loop in this thread, so all store and ORM work happens above.
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", "a-long-browser-password")
            page.click("input[type=submit]")
            # Chromium cannot capture a page mid-navigation: wait until the index has rendered.
            expect(page.locator("#content-main .app-session_history")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "admin-index.png"))
            page.click("#content-main .app-session_history a.section")
            expect(page.locator("#result_list")).to_contain_text(session["key"])
            page.screenshot(path=str(ARTIFACTS / "session-list.png"), full_page=True)
            page.click(f"a[href='/admin/sessions/{session['id']}/']")

            tool_call = page.locator(".tool-call")
            expect(tool_call).to_contain_text("calc.add")
            expect(tool_call).to_contain_text('"a": 2')
            expect(tool_call).to_contain_text("3.5 ms")
            expect(page.locator(f"#run-{run['id']}")).to_contain_text("end_turn")
            expect(page.locator(".transcript")).to_contain_text("2+2 is <b>4</b>.")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
