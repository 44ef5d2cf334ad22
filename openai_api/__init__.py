"""The OpenAI-compatible HTTP API at /v1/ (docs/api.md): every enabled agent a token may name is a
model, and `POST /v1/chat/completions` runs it on the run service (`agents.runtime.service`), as the
gateway's `chat.send` and the webhooks do. This package only translates: OpenAI's JSON in
(`request.py`), OpenAI's JSON and Server-Sent Events out (`responses.py`), errors in OpenAI's shape
mapped once (`errors.py`), who is asking from the Bearer token (`access.py`), and HTTP itself over
ASGI (`http.py`, `asgi.py`: mounted ahead of Django in exoclaw/asgi.py)."""
