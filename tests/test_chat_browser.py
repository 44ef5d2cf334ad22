"""The web chat in Debian's Chromium against a live daphne with the echo agent. Screenshots of every
test are kept under test-artifacts/."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from exoclaw.client import REASONS
from tests.clients_fixtures import ARTIFACTS

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

# About five seconds of streaming from the `chatty` echo agent here, if nothing stops it.
LONG_TEXT = " ".join(f"w{i}" for i in range(5000))

# Records every distinct text the newest reply shows, so a test can tell streaming from one big paint.
WATCH_REPLY = """() => {
  window.replyTexts = [];
  new MutationObserver(() => {
    const bodies = document.querySelectorAll('.msg.assistant .msg-body');
    const last = bodies[bodies.length - 1];
    const text = last ? last.textContent : '';
    if (text && window.replyTexts[window.replyTexts.length - 1] !== text) window.replyTexts.push(text);
  }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
}"""


def open_chat(page, base_url):
    page.goto(base_url + "/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    return page


def sign_in(page, server):
    """From the chat page, through the admin's login form and back."""
    page.click("#signin-link")
    page.fill("#id_username", "admin")
    page.fill("#id_password", server.admin_password)
    page.click("input[type=submit]")
    expect(page).to_have_url(server.http_url + "/")
    expect(page.locator("#who")).to_have_text("admin")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(page.locator("#principal")).to_have_text("as user:admin")


def send(page, text):
    page.fill("#input", text)
    page.press("#input", "Enter")


def last_reply(page):
    return page.locator(".msg.assistant").last


def test_sign_in_then_watch_a_reply_stream_word_by_word(exoclaw_server, remote_page):
    page = remote_page
    page.goto(exoclaw_server.http_url + "/")
    expect(page.locator("#auth-message")).to_have_text(REASONS["auth_required"])
    sign_in(page, exoclaw_server)
    expect(page.locator("#auth-panel")).to_be_hidden()
    expect(page.locator("#agent option[value=demo]")).to_have_count(1)
    page.select_option("#agent", "demo")
    page.evaluate(WATCH_REPLY)
    text = "streaming arrives one word after another in the browser"
    send(page, text)
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-state", "done")
    expect(reply.locator(".msg-body")).to_have_text(text)
    expect(reply.locator(".msg-who")).to_have_text("demo")
    seen = page.evaluate("window.replyTexts")
    assert len(seen) > 2, f"the reply appeared in {len(seen)} step(s), not word by word: {seen}"
    assert all(text.startswith(s.strip()) for s in seen), seen
    expect(page.locator("#session-list li.current")).to_have_count(1)


def test_a_calc_tool_call_shows_as_a_card_with_its_result(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    send(page, "Hello exoclaw! What is six times seven?")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    send(page, '/tool calc {"expr": "6*7"}')
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-state", "done")
    card = reply.locator("details.tool")
    expect(card).to_have_count(1)
    expect(card).to_have_attribute("data-status", "ok")
    expect(card.locator(".tool-name")).to_contain_text("calc")
    expect(card.locator(".tool-preview")).to_contain_text("42")
    expect(card.locator(".tool-time")).to_have_text(re.compile(r"^\d+ ms$"))
    card.locator("summary").click()
    expect(card.locator(".tool-input")).to_contain_text('"expr": "6*7"')
    expect(card.locator(".tool-output")).to_contain_text("42")
    expect(reply.locator(".msg-body")).to_contain_text("42")
    page.screenshot(path=str(ARTIFACTS / "chat-calc.png"))  # the README's docs/img/chat.png


def test_an_empty_conversation_names_the_agent_and_offers_the_calc_tool(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    page.click("#new-chat")
    empty = page.locator("#empty")
    expect(empty).to_be_visible()
    expect(page.locator("#empty-agent")).to_have_text(
        "The agent demo answers here (routing picks it for this channel and peer)."
    )
    page.select_option("#agent", "chatty")
    expect(page.locator("#empty-agent")).to_have_text("The agent chatty answers here (you chose it).")
    page.select_option("#agent", "")
    page.click("#try-tool")
    expect(page.locator("#input")).to_have_value('/tool calc {"expr": "6*7"}')
    page.press("#input", "Enter")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(empty).to_be_hidden()
    key = page.locator("#session-key").text_content()
    # user, assistant (tool use), tool result, assistant: four messages, and the count reads as words.
    expect(page.locator(f'#session-list li[data-key="{key}"] small')).to_have_text("demo · web · 4 messages")


def test_a_failing_tool_call_shows_its_error_on_the_card(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    send(page, '/tool calc {"expr": "6*/"}')
    card = last_reply(page).locator("details.tool")
    expect(card).to_have_attribute("data-status", "error")
    card.locator("summary").click()
    expect(card.locator(".tool-error")).to_be_visible()
    expect(card.locator(".tool-status")).to_have_text("failed")
    error = card.locator(".tool-error").text_content()
    assert error.startswith("calc: unexpected character") and not re.match(r"^(\w+): \1:", error), error


def test_stop_aborts_a_long_reply(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    page.select_option("#agent", "chatty")
    send(page, LONG_TEXT)
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).to_contain_text("w0")
    page.click("#abort")
    expect(reply).to_have_attribute("data-state", "aborted")
    expect(reply.locator(".msg-meta")).to_contain_text("stopped")
    shown = reply.locator(".msg-body").text_content()
    assert LONG_TEXT.startswith(shown) and len(shown) < len(LONG_TEXT), "the reply was not cut short"
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#abort")).to_be_hidden()


def test_reload_shows_the_conversation_and_continues_it(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    send(page, "remember the first message")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    key = page.locator("#session-key").text_content()
    assert key.startswith("agent:demo:web:")

    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(page.locator(".msg.user")).to_have_text(["remember the first message"])
    expect(page.locator(".msg.assistant .msg-body")).to_have_text(["remember the first message"])
    expect(page.locator("#session-key")).to_have_text(key)

    send(page, "and now a second one")
    expect(page.locator(".msg.assistant").nth(1)).to_have_attribute("data-state", "done")
    expect(page.locator("#session-key")).to_have_text(key)
    messages = exoclaw_server.history(key)["messages"]
    texts = [b["text"] for m in messages for b in m["content"] if b["type"] == "text"]
    assert texts == ["remember the first message"] * 2 + ["and now a second one"] * 2


def test_a_reload_in_the_middle_of_a_reply_picks_it_up_again(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    page.select_option("#agent", "chatty")
    send(page, LONG_TEXT)
    expect(last_reply(page).locator(".msg-body")).to_contain_text("w0")
    page.reload()
    # Whether the reply is still running (followed again from its first event) or has just ended (shown
    # from the history), the page ends up with the exchange exactly once and whole.
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    assert page.locator(".msg.user").text_content() == LONG_TEXT, "the message is not shown whole"
    assert last_reply(page).locator(".msg-body").text_content() == LONG_TEXT, "the reply is not shown whole"


def test_switching_to_an_older_conversation_loads_its_history(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    send(page, "the older conversation")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    older = page.locator("#session-key").text_content()
    page.click("#new-chat")
    expect(page.locator(".msg")).to_have_count(0)
    send(page, "a newer conversation")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    assert page.locator("#session-key").text_content() != older

    page.locator(f'#session-list li[data-key="{older}"] button').click()
    expect(page.locator("#session-key")).to_have_text(older)
    expect(page.locator(".msg.user")).to_have_text(["the older conversation"])
    send(page, "back in the older one")
    expect(page.locator(".msg.assistant").nth(1)).to_have_attribute("data-state", "done")
    expect(page.locator("#session-key")).to_have_text(older)


def test_a_long_conversation_loads_its_earlier_messages_on_demand(exoclaw_server, browser_page):
    peer = f"web-long-{uuid.uuid4().hex[:8]}"

    async def chat_30_times(gw):
        for i in range(30):
            sent = await gw.call("chat.send", {"text": f"m{i}", "agent": "demo", "channel": "web", "peer": peer})
            async for _ in gw.events(sent["run_id"]):
                pass
        return sent["session_key"]

    key = exoclaw_server.with_gateway(chat_30_times)
    page = open_chat(browser_page, exoclaw_server.http_url)
    page.locator(f'#session-list li[data-key="{key}"] button').click()
    # One page is the last 50 messages: the last 25 of the 30 exchanges.
    expect(page.locator(".msg.user")).to_have_count(25)
    expect(page.locator(".msg.user").first).to_have_text("m5")
    page.click("#load-earlier")
    expect(page.locator(".msg.user")).to_have_count(30)
    expect(page.locator(".msg.user").first).to_have_text("m0")
    expect(page.locator(".msg.assistant .msg-body").first).to_have_text("m0")
    expect(page.locator("#load-earlier")).to_be_hidden()


def test_a_dropped_connection_mid_reply_reconnects_and_loses_no_text(exoclaw_server, proxy, browser_page):
    page = open_chat(browser_page, f"http://127.0.0.1:{proxy.port}")
    # The browser gets the reply's first events; after that the link goes silent, then dies.
    proxy.freeze_after(b'"type":"delta"')
    page.select_option("#agent", "chatty")
    send(page, LONG_TEXT)
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).to_contain_text("w0")
    proxy.frozen.wait(5)
    assert reply.get_attribute("data-state") == "running"
    before = reply.locator(".msg-body").text_content()
    assert proxy.cut() > 0
    expect(page.locator("#conn")).not_to_have_attribute("data-state", "open")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(reply).to_have_attribute("data-state", "done")
    after = reply.locator(".msg-body").text_content()
    assert len(before) < len(LONG_TEXT), "the whole reply arrived before the drop"
    assert after == LONG_TEXT, "text was lost or repeated across the reconnect"


def test_a_wrong_token_is_refused_in_plain_words_and_a_right_one_works(exoclaw_server, remote_page):
    page = remote_page
    page.goto(exoclaw_server.http_url + "/")
    expect(page.locator("#auth-message")).to_have_text(REASONS["auth_required"])
    page.fill("#token-input", "exo_this-token-does-not-exist")
    page.press("#token-input", "Enter")
    expect(page.locator("#auth-message")).to_have_text(REASONS["token_invalid"])

    page.fill("#token-input", exoclaw_server.token)
    page.press("#token-input", "Enter")
    expect(page.locator("#auth-panel")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    assert page.evaluate("sessionStorage.getItem('exoclaw.token')") == exoclaw_server.token
    expect(page.locator("#principal")).to_have_text(re.compile(r"^as token:"))
    send(page, "hello with a token")
    expect(last_reply(page).locator(".msg-body")).to_have_text("hello with a token")


def test_errors_from_the_gateway_are_shown_in_plain_words(exoclaw_server, browser_page):
    page = open_chat(browser_page, exoclaw_server.http_url)
    page.evaluate("""() => { const o = new Option('ghost', 'ghost'); document.getElementById('agent').append(o); }""")
    page.select_option("#agent", "ghost")
    send(page, "is anyone there")
    expect(page.locator("#notice")).to_have_text(REASONS["no_agent"])
    expect(page.locator("#input")).to_have_value("is anyone there")


def test_the_chat_works_on_a_phone_sized_screen(exoclaw_server, chromium):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        open_chat(page, exoclaw_server.http_url)
        expect(page.locator("#sessions")).to_be_hidden()
        send(page, "hello from a phone")
        expect(last_reply(page).locator(".msg-body")).to_have_text("hello from a phone")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
        expect(page.locator("#send")).to_be_in_viewport()
        page.click("#toggle-sessions")
        expect(page.locator("#sessions")).to_be_visible()
        expect(page.locator("#session-list li.current")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "chat-phone.png"))
    finally:
        context.close()
