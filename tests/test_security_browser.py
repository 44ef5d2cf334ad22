"""In Chromium: a page served from another port on this machine cannot borrow the gateway's loopback
trust, while exoclaw's own page keeps it."""

import http.server
import threading

import pytest

pytestmark = pytest.mark.browser

ATTACKER_PAGE = """<!doctype html><title>waiting</title><script>
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws");
ws.onopen = () => ws.send(JSON.stringify({jsonrpc: "2.0", method: "sessions.list", params: {}, id: 1}));
ws.onmessage = (m) => { document.title = "answered: " + m.data; };
ws.onclose = () => { if (document.title === "waiting") document.title = "refused"; };
</script>"""


@pytest.fixture
def other_site(exoclaw_server):
    """Another web server on this machine, on another port, serving a page that tries the gateway."""
    page = (ATTACKER_PAGE % {"port": exoclaw_server.port}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_a_page_from_another_local_port_gets_no_loopback_trust(exoclaw_server, other_site, browser_page):
    browser_page.goto(other_site)
    browser_page.wait_for_function("document.title !== 'waiting'")
    assert browser_page.title() == "refused", "the other page reached the gateway"


def test_exoclaws_own_page_keeps_loopback_trust(exoclaw_server, browser_page):
    browser_page.goto(exoclaw_server.http_url + "/")
    result = browser_page.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
        ws.onopen = () => ws.send(JSON.stringify({jsonrpc: "2.0", method: "status", id: 1}));
        ws.onmessage = (m) => resolve(JSON.parse(m.data));
        ws.onclose = () => resolve(null);
    })""")
    assert result and result["result"]["principal"] == "loopback"
