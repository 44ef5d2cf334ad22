from django.shortcuts import render

from exoclaw.client import REASONS

# The page loads only its own script and stylesheet and talks only to its own server's WebSocket.
CHAT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def chat(request):
    response = render(request, "chat.html", {"reasons": REASONS})
    response["Content-Security-Policy"] = CHAT_CSP
    return response
