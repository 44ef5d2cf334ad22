"""The admin transcript's live tail in Debian's Chromium against a live daphne: a staff user watches a
run of the slow `chatty` echo agent stream into the transcript, then sees it finish. The page sends a
proxy header, so the gateway cannot let it in as loopback: only the admin's session cookie does."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.clients_fixtures import ARTIFACTS

pytestmark = pytest.mark.browser

# About five seconds of streaming from the `chatty` echo agent here.
LONG_TEXT = " ".join(f"w{i}" for i in range(5000))

# Records every length the live run's text had and every state of the indicator, so the test can tell
# streaming from one paint at the end.
WATCH_TAIL = """() => {
  window.tailLengths = [];
  window.tailStates = [];
  const root = document.getElementById('live-tail');
  new MutationObserver(() => {
    const body = root.querySelector('.live-run .live-body');
    const length = body ? body.textContent.length : 0;
    if (length && window.tailLengths[window.tailLengths.length - 1] !== length) window.tailLengths.push(length);
    const state = root.querySelector('.live-indicator').dataset.state;
    if (window.tailStates[window.tailStates.length - 1] !== state) window.tailStates.push(state);
  }).observe(root, {childList: true, subtree: true, characterData: true, attributes: true});
}"""


def chat(server, text, peer, wait):
    async def work(gw):
        sent = await gw.call("chat.send", {"text": text, "agent": "chatty", "channel": "web", "peer": peer})
        if wait:
            async for _ in gw.events(sent["run_id"]):
                pass
        history = await gw.call("sessions.history", {"session_key": sent["session_key"], "limit": 1})
        return sent["run_id"], history["session"]["id"]

    return server.with_gateway(work)


def test_staff_watch_a_run_stream_into_the_transcript_then_finish(exoclaw_server, remote_page):
    page = remote_page
    peer = f"tail-{uuid.uuid4().hex[:8]}"
    _, session_id = chat(exoclaw_server, "the first exchange", peer, wait=True)
    transcript_url = f"{exoclaw_server.http_url}/admin/sessions/{session_id}/"
    page.goto(f"{exoclaw_server.http_url}/admin/login/?next=/admin/sessions/{session_id}/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", exoclaw_server.admin_password)
    page.click("input[type=submit]")
    expect(page).to_have_url(transcript_url)
    indicator = page.locator("#live-tail .live-indicator")
    expect(indicator).to_have_attribute("data-state", "idle")
    page.evaluate(WATCH_TAIL)

    run_id, same_session = chat(exoclaw_server, LONG_TEXT, peer, wait=False)
    assert same_session == session_id
    live = page.locator(f'#live-tail .live-run[data-run-id="{run_id}"]')
    expect(live.locator(".live-body")).to_contain_text("w0 w1 w2")
    indicator.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "session-live-tail-streaming.png"))

    # A second staff page opened on the transcript while the run streams finds it running.
    late = page.context.new_page()
    late.goto(transcript_url)
    late_run = late.locator(f'#live-tail .live-run[data-run-id="{run_id}"]')
    expect(late_run).to_have_count(1)
    expect(late_run.locator(".live-body")).to_have_text(LONG_TEXT, timeout=60_000)
    expect(late_run).to_have_attribute("data-state", "done")
    late.close()

    expect(live).to_have_attribute("data-state", "done", timeout=60_000)
    assert live.locator(".live-body").text_content() == LONG_TEXT, "text was lost or repeated"
    expect(live.locator(".live-status")).to_contain_text("finished: end_turn")
    expect(indicator).to_have_attribute("data-state", "idle")
    lengths = page.evaluate("window.tailLengths")
    assert len(lengths) > 2, f"the reply appeared in {len(lengths)} step(s), not as it streamed"
    assert lengths == sorted(lengths), "the live text shrank while streaming"
    assert "live" in page.evaluate("window.tailStates"), "the indicator never said live"
    indicator.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "session-live-tail-finished.png"))

    live.locator("a.live-reload").click()
    expect(page.locator(".transcript .message.assistant .text").last).to_have_text(LONG_TEXT)
    expect(page.locator("#live-tail .live-run")).to_have_count(0)
