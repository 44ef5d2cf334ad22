"""The OpenAI-compatible API with the official `openai` SDK as the client, against the live daphne
(`exoclaw_server`: the echo demo from `bootstrap`, the calc plugin in the sandbox, the real store).
What the run recorded is read back over the gateway, as any client would."""

import asyncio
import json
import uuid

import httpx
import openai
import pytest


# A tool that never returns (until its 20 s timeout), for an agent that is surely mid-run when its
# client goes away; and a token that may name only that agent.
SETUP = """
from agents.models import Agent
from exoclaw.models import ApiToken
from sandbox.models import CapabilityGrant, Plugin
if not Plugin.objects.filter(name="spin").exists():
    spin = Plugin(name="spin", wasm_path="tests/plugins/loop.wasm",
                  declared_tools=[{"name": "spin", "description": "Never returns.", "input_schema": {"type": "object"}}])
    spin.full_clean()
    spin.save()
    CapabilityGrant.objects.create(plugin=spin, timeout_ms=20000)
Agent.objects.get_or_create(name="spinner", defaults={"provider": "echo", "tools": ["spin"]})
row = ApiToken(name="openai-only-spinner-" + __import__("uuid").uuid4().hex[:6], scopes=["chat"], agents=["spinner"])
print(row.set_new_token())
row.save()
"""


@pytest.fixture(scope="module")
def live(exoclaw_server):
    done = exoclaw_server.manage("shell", "-c", SETUP)
    assert done.returncode == 0, done.stdout + done.stderr
    exoclaw_server.spinner_token = done.stdout.strip().splitlines()[-1]
    return exoclaw_server


def client(server, token=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.http_url + "/v1", api_key=token or server.token, max_retries=0, timeout=30)


def history(server, session_key) -> list[tuple[str, str]]:
    page = server.history(session_key)
    return [(m["role"], "".join(b.get("text", "") for b in m["content"] if b.get("type") == "text"))
            for m in page["messages"]]


def test_models_list_the_enabled_agents_the_token_may_name(live):
    models = client(live).models.list()
    ids = [m.id for m in models.data]
    assert {"demo", "chatty", "spinner"} <= set(ids), ids
    assert {(m.object, m.owned_by) for m in models.data} == {("model", "exoclaw")}
    assert [m.id for m in client(live, live.spinner_token).models.list().data] == ["spinner"]
    assert client(live).models.retrieve("demo").id == "demo"


def test_a_completion_on_the_echo_agent_returns_the_echoed_text(live):
    completion = client(live).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "hello there, exoclaw"}])
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant", "hello there, exoclaw", "stop")
    assert (completion.model, completion.object) == ("demo", "chat.completion")
    assert completion.id.startswith("chatcmpl-")
    # The echo agent counts words: three in, three out.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        3, 3, 6)


def test_a_streamed_completion_yields_deltas_that_join_to_the_same_text_and_ends_with_usage(live):
    text = "one two three four five six seven"
    stream = client(live).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": text}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 7, f"one delta per word, as the agent streamed them: {deltas}"
    assert "".join(deltas) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 7)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_a_tool_call_runs_calc_in_the_sandbox_and_the_answer_says_42(live):
    completion = client(live).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": '/tool calc {"expr": "6*7"}'}])
    assert completion.choices[0].message.content == "Tool calc.calc returned: 42"
    assert completion.choices[0].finish_reason == "stop"


def test_the_request_messages_are_the_context_and_the_run_is_recorded_in_a_session_of_its_own(live):
    raw = client(live).chat.completions.with_raw_response.create(model="demo", messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one two"},
        {"role": "assistant", "content": "three"},
        {"role": "user", "content": "four five six"},
    ])
    completion = raw.parse()
    assert completion.choices[0].message.content == "four five six"
    # The echo agent counts every word it was sent: the system text and all four messages.
    assert completion.usage.prompt_tokens == 2 + 2 + 1 + 3
    key = raw.headers["X-Exoclaw-Session-Key"]
    assert key.startswith("agent:demo:openai:token%3AEXOCLAW_TOKEN:req-"), key
    assert history(live, key) == [("user", "four five six"), ("assistant", "four five six")]


def test_a_conversation_id_continues_the_same_session(live):
    api = client(live)
    conversation = {"X-Exoclaw-Conversation": f"conv-{uuid.uuid4().hex}"}
    first = api.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "first message"}], extra_headers=conversation)
    second = api.chat.completions.with_raw_response.create(model="demo", messages=[
        {"role": "user", "content": "ignored: the stored history is the context"},
        {"role": "assistant", "content": "ignored too"},
        {"role": "user", "content": "second message"},
    ], extra_headers=conversation)
    assert second.parse().choices[0].message.content == "second message"
    key = first.headers["X-Exoclaw-Session-Key"]
    assert second.headers["X-Exoclaw-Session-Key"] == key
    assert first.headers["X-Exoclaw-Run-Id"] != second.headers["X-Exoclaw-Run-Id"]
    assert second.parse().usage.prompt_tokens == 2 + 2 + 2, "the context was the stored history"
    assert history(live, key) == [("user", "first message"), ("assistant", "first message"),
                                  ("user", "second message"), ("assistant", "second message")]


def test_a_wrong_key_raises_authentication_error(live):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(live, "exo_not-a-token").models.list()
    assert refused.value.code == "invalid_api_key"


def test_an_unknown_model_raises_not_found(live):
    with pytest.raises(openai.NotFoundError) as missing:
        client(live).chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"


def test_a_token_without_permission_for_the_agent_gets_permission_denied(live):
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(live, live.spinner_token).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.code == "model_not_permitted"


def test_client_side_tools_are_refused_with_a_clear_400(live):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client(live).chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}], tools=[tool])
    assert refused.value.code == "tools_not_supported" and refused.value.param == "tools"
    assert "sandbox" in refused.value.message


def test_closing_the_stream_early_aborts_the_run(live):
    stream = client(live, live.spinner_token).chat.completions.create(
        model="spinner", messages=[{"role": "user", "content": "/tool spin.spin {}"}], stream=True)
    run_id = stream.response.headers["X-Exoclaw-Run-Id"]
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"

    async def close_mid_tool_call(gw):
        await gw.call("chat.subscribe", {"run_id": run_id})
        seen = []
        async for event in gw.events(run_id, timeout=30):
            seen.append(event)
            if event["type"] == "tool_call":
                stream.close()  # the run is inside a tool call that would take 20 s
        return seen, await gw.call("chat.subscribe", {"run_id": run_id})

    seen, status = live.with_gateway(close_mid_tool_call)
    assert [e["type"] for e in seen] == ["tool_call", "done"], seen
    assert seen[-1]["stop_reason"] == "aborted", seen
    assert status["status"] == "aborted"
    key = stream.response.headers["X-Exoclaw-Session-Key"]
    page = live.history(key)
    # The tool call left without its result is answered as cancelled, marked `aborted` in the store.
    assert [(m["role"], m["interrupted"]) for m in page["messages"]] == [
        ("user", None), ("assistant", None), ("user", "aborted")], page["messages"]


def test_a_client_that_hangs_up_while_waiting_for_a_whole_answer_aborts_the_run(live):
    from websockets.asyncio.client import connect

    conversation = f"hangup-{uuid.uuid4().hex[:8]}"
    opened = client(live, live.spinner_token).chat.completions.with_raw_response.create(
        model="spinner", messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Exoclaw-Conversation": conversation})
    key = opened.headers["X-Exoclaw-Session-Key"]

    async def hang_up_mid_tool_call():
        async with connect(live.ws_url, additional_headers={"Authorization": f"Bearer {live.token}"}) as ws:
            async def call(method, params):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": method, "method": method, "params": params}))

            async def until(predicate):
                while not predicate(message := json.loads(await asyncio.wait_for(ws.recv(), 30))):
                    assert "error" not in message, message
                return message

            await call("sessions.follow", {"session_key": key})
            await until(lambda m: m.get("id") == "sessions.follow")
            async with httpx.AsyncClient(timeout=60) as http:
                waiting = asyncio.create_task(http.post(
                    live.http_url + "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {live.spinner_token}", "X-Exoclaw-Conversation": conversation},
                    json={"model": "spinner", "messages": [{"role": "user", "content": "/tool spin.spin {}"}]}))
                run_id = (await until(lambda m: m.get("method") == "sessions.run"))["params"]["run_id"]
                await call("chat.subscribe", {"run_id": run_id})
                await until(lambda m: m.get("method") == "chat.event" and m["params"]["type"] == "tool_call")
                waiting.cancel()  # the client gives up: its connection closes
            ending = await until(lambda m: m.get("method") == "chat.event" and m["params"]["type"] in ("done", "error"))
            return ending["params"]

    ending = asyncio.run(hang_up_mid_tool_call())
    assert (ending["type"], ending.get("stop_reason")) == ("done", "aborted"), ending


def test_an_error_answers_in_openais_shape_over_plain_http(live):
    # What curl sees: the status, and {"error": {...}} in JSON, never an HTML page or a traceback.
    response = httpx.post(live.http_url + "/v1/chat/completions", content=b'{"model": "demo", "messages": [',
                          headers={"Authorization": f"Bearer {live.token}"})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "The request body is not valid JSON.",
                                         "type": "invalid_request_error", "param": None, "code": "invalid_json"}}
    raw = httpx.post(live.http_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {live.token}"},
                     content=json.dumps({"model": "demo", "messages": [{"role": "user", "content": "a b"}],
                                         "stream": True}))
    lines = [line for line in raw.text.split("\n\n") if line]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"


# --- In this process: the same app (exoclaw.asgi, which mounts /v1 ahead of Django) driven over
# ASGI, for what the live server's settings and shared login throttle should not be bent for (the real
# run service, store, sandbox).

USER = {"role": "user", "content": "hi"}
# How long a test waits for the app's next message before failing.
WAIT = 30


class Response:
    """What the app answered: its status and headers, and its body whole (`content`) or, for an event
    stream, its parts as they come (`streaming_content`)."""

    def __init__(self, communicator, start: dict):
        self.communicator = communicator
        self.status_code = start["status"]
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    @property
    async def streaming_content(self):
        while True:
            message = await self.communicator.receive_output(WAIT)
            if message["body"]:
                yield message["body"]
            if not message.get("more_body"):
                return

    async def read(self) -> "Response":
        self.content = b"".join([part async for part in self.streaming_content])
        return self


class Api:
    """A client sending the token (and `forwarded_for`, as a proxy in TRUSTED_PROXIES would) with every
    request, from 127.0.0.1 to 127.0.0.1:7200."""

    def __init__(self, token: str | None, forwarded_for: str | None = None, **headers):
        self.headers = {"Host": "127.0.0.1:7200", **({"Authorization": f"Bearer {token}"} if token else {}), **headers}
        if forwarded_for:
            self.headers["X-Forwarded-For"] = forwarded_for

    async def request(self, method: str, path: str, body: bytes | list[bytes] = b"", **headers) -> Response:
        """`body` as one ASGI message, or a list of parts as a body that streams in."""
        from asgiref.testing import ApplicationCommunicator

        from exoclaw.asgi import application

        sent = {**self.headers, **headers}
        communicator = ApplicationCommunicator(application, {
            "type": "http", "http_version": "1.1", "method": method, "path": path, "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7200)})
        parts = body if isinstance(body, list) else [body]
        for i, part in enumerate(parts):
            await communicator.send_input({"type": "http.request", "body": part, "more_body": i < len(parts) - 1})
        response = Response(communicator, await communicator.receive_output(WAIT))
        return response if response["Content-Type"] == "text/event-stream" else await response.read()

    async def get(self, path: str, **headers) -> Response:
        return await self.request("GET", path, **headers)

    async def post(self, path: str, data, **headers) -> Response:
        return await self.request("POST", path, data.encode() if isinstance(data, str) else data,
                                  **{"Content-Type": "application/json", **headers})


def api(token: str | None, forwarded_for: str | None = None, **headers) -> Api:
    return Api(token, forwarded_for, **headers)


async def post(client: Api, body, **headers):
    return await client.post("/v1/chat/completions", body if isinstance(body, bytes) else json.dumps(body), **headers)


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    assert response["X-Content-Type-Options"] == "nosniff"
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


LONE_SURROGATE = b'{"model": "helper", "messages": [{"role": "user", "content": "\\ud800"}]}'


@pytest.mark.parametrize("body, param, code", [
    (b'{"model": "helper", "messages": [', None, "invalid_json"),
    (b"\xff\xfe\x00", None, "invalid_json"),
    (b"[" * 50_000, None, "invalid_json"),
    (b"[]", None, None),
    ({"model": 5, "messages": [USER]}, "model", None),
    ({"model": "helper", "messages": "hi"}, "messages", None),
    ({"model": "helper", "messages": []}, "messages", None),
    ({"model": "helper", "messages": [USER], "stream": "yes"}, "stream", None),
    ({"model": "helper", "messages": [USER], "stream": True, "stream_options": {"include_usage": 1}}, "include_usage", None),
    ({"model": "helper", "messages": [USER], "n": 2}, "n", None),
    (LONE_SURROGATE, "messages[0].content", None),
    ({"model": "helper", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type", "unsupported_content"),
    ({"model": "helper", "messages": [USER, {"role": "tool", "content": "42", "tool_call_id": "c"}]},
     "messages[1].role", "tools_not_supported"),
    ({"model": "helper", "messages": [USER], "functions": [{"name": "f"}]}, "functions", "tools_not_supported"),
    ({"model": "helper", "messages": [USER, {"role": "assistant", "content": "yes"}]}, "messages", None),
    ({"model": "helper", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", None),
    ({"model": "helper", "messages": [{"role": "user", "content": "x" * 100_001}]}, "messages", None),
])
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_bad_input_is_a_clear_openai_shaped_400_and_starts_nothing(body, param, code):
    from agents.store import get_store
    from tests.runtime_fixtures import make_agent, make_token

    await make_agent("helper")
    response = await post(api(await make_token()), body)
    assert response.status_code == 400, response.content[:300]
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error
    assert (await get_store().list_sessions())["total"] == 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_a_body_over_the_limit_is_413(settings):
    from tests.runtime_fixtures import make_agent, make_token

    await make_agent("helper")
    settings.OPENAI_COMPAT_MAX_BODY_BYTES = 1000
    client = api(await make_token())
    response = await post(client, {"model": "helper", "messages": [{"role": "user", "content": "x" * 1000}]})
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"
    # Counted as it streams in: parts each under the limit, together over it.
    body = json.dumps({"model": "helper", "messages": [{"role": "user", "content": "x" * 960}]}).encode()
    response = await client.request("POST", "/v1/chat/completions", [body[:600], body[600:]])
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"
    settings.OPENAI_COMPAT_MAX_BODY_BYTES = len(body)
    response = await client.request("POST", "/v1/chat/completions", [body[:600], body[600:]])
    assert response.status_code == 200, response.content


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_wrong_methods_and_unknown_urls_answer_in_openais_shape():
    from tests.runtime_fixtures import make_token

    client = api(await make_token())
    response = await client.get("/v1/chat/completions")
    assert (response.status_code, response["Allow"], error_of(response)["code"]) == (405, "POST", "method_not_allowed")
    for path in ("/v1/embeddings", "/v1/models/", "/v1/models/demo/x", "/v1"):
        response = await client.get(path)
        assert (response.status_code, error_of(response)["code"]) == (404, "unknown_url"), path
    for method in ("DELETE", "PUT", "POST"):
        response = await client.request(method, "/v1/nothing")
        assert (response.status_code, error_of(response)["code"]) == (404, "unknown_url"), method


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_host_outside_allowed_hosts_is_400_before_anything_else():
    from tests.runtime_fixtures import make_token

    response = await api(await make_token(), Host="evil.example").get("/v1/models")
    assert (response.status_code, error_of(response)["code"]) == (400, "host_not_allowed")
    response = await api(None, Host="evil.example").get("/v1/embeddings")
    assert (response.status_code, error_of(response)["code"]) == (400, "host_not_allowed")


@pytest.mark.asyncio
@pytest.mark.parametrize("debug, status", [(False, 400), (True, 404)])
async def test_an_empty_allowed_hosts_admits_the_local_names_only_under_debug(settings, debug, status):
    # As Django's own pages: with ALLOWED_HOSTS empty, DEBUG admits localhost; production admits nothing.
    settings.ALLOWED_HOSTS, settings.DEBUG = [], debug
    response = await api(None, Host="localhost:7200").get("/v1/embeddings")
    assert response.status_code == status


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_token_needs_a_bearer_header_and_the_chat_scope():
    from tests.runtime_fixtures import make_token

    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        response = await api(None, **headers).get("/v1/models")
        assert (response.status_code, error_of(response)["code"]) == (401, "invalid_api_key"), headers
    reader = await make_token(scopes=("sessions:read",))
    response = await api(reader).get("/v1/models")
    assert (response.status_code, error_of(response)["type"], error_of(response)["code"]) == (
        403, "permission_error", "missing_scope")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_revoked_token_stops_working_at_once_here_and_within_the_recheck_period_elsewhere(settings):
    from exoclaw.models import ApiToken
    from tests.runtime_fixtures import make_token

    settings.GATEWAY_TOKEN_RECHECK_SECONDS = 3600  # a check is reused for an hour...
    raw = await make_token(name="revoked-soon")
    assert (await api(raw).get("/v1/models")).status_code == 200
    token = await ApiToken.objects.aget(name="revoked-soon")
    token.enabled = False
    await token.asave(update_fields=["enabled"])  # ...but a change in this process is seen at once
    refused = await api(raw).get("/v1/models")
    assert (refused.status_code, error_of(refused)["message"]) == (401, "The API token was refused: this token is disabled.")
    other = await make_token(name="changed-elsewhere")
    assert (await api(other).get("/v1/models")).status_code == 200
    # Another process's change (a bulk update sends no signal here) is seen once the check is older
    # than GATEWAY_TOKEN_RECHECK_SECONDS.
    await ApiToken.objects.filter(name="changed-elsewhere").aupdate(enabled=False)
    assert (await api(other).get("/v1/models")).status_code == 200
    settings.GATEWAY_TOKEN_RECHECK_SECONDS = 0
    assert (await api(other).get("/v1/models")).status_code == 401


@pytest.fixture
def clean_throttle():
    from exoclaw.gateway.limits import failed_auth

    failed_auth.clear()
    yield
    failed_auth.clear()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_throttle")
async def test_refused_tokens_are_throttled_per_address_with_retry_after_but_a_valid_token_still_works(settings):
    from tests.runtime_fixtures import make_token

    settings.GATEWAY_AUTH_FAILURES, settings.GATEWAY_AUTH_WINDOW = 3, 60
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client's address: a proxy that names the client
    for _ in range(3):
        assert (await api("exo_guess", "203.0.113.50").get("/v1/models")).status_code == 401
    throttled = await api("exo_guess", "203.0.113.50").get("/v1/models")
    assert (throttled.status_code, error_of(throttled)["code"]) == (429, "auth_throttled")
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert (await api("exo_guess", "203.0.113.51").get("/v1/models")).status_code == 401, "another address"
    assert (await api(await make_token(), "203.0.113.50").get("/v1/models")).status_code == 200


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_each_token_is_rate_limited_with_retry_after(settings):
    from tests.runtime_fixtures import make_token

    settings.OPENAI_COMPAT_RATE, settings.OPENAI_COMPAT_BURST = 0.01, 2
    client = api(await make_token())
    assert [(await client.get("/v1/models")).status_code for _ in range(2)] == [200, 200]
    limited = await client.get("/v1/models")
    assert (limited.status_code, error_of(limited)["type"], error_of(limited)["code"]) == (
        429, "rate_limit_error", "rate_limit_exceeded")
    assert int(limited["Retry-After"]) >= 1
    assert (await api(await make_token()).get("/v1/models")).status_code == 200, "another token has its own bucket"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_a_busy_conversation_is_429_with_retry_after():
    from agents.runtime import service
    from tests.runtime_fixtures import make_agent, make_token, spin_plugin

    await spin_plugin()
    await make_agent("strict", tools=["spin"], busy_policy="reject")
    client = api(await make_token(name="busy-tester"))
    conversation = {"X-Exoclaw-Conversation": "c-1"}
    running = await post(client, {"model": "strict", "stream": True,
                                  "messages": [{"role": "user", "content": "/tool spin.spin {}"}]}, **conversation)
    assert running.status_code == 200
    busy = await post(client, {"model": "strict", "messages": [USER]}, **conversation)
    assert (busy.status_code, error_of(busy)["code"], busy["Retry-After"]) == (429, "session_busy", "2")
    me = service.Origin("token:busy-tester", "test")
    assert await service.abort(me, running["X-Exoclaw-Run-Id"]) is True
    events = [line async for line in running.streaming_content]
    assert b'"finish_reason":"stop"' in events[-2] and events[-1] == b"data: [DONE]\n\n"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_the_llm_behind_the_agent_failing_is_a_502_in_openais_shape(fake_anthropic, fast_llm_retries, monkeypatch):
    from tests.fakes.anthropic_server import overloaded
    from tests.runtime_fixtures import make_agent, make_token

    monkeypatch.setenv("EXO_TEST_LLM_KEY", "sk-test")
    await make_agent("remote", provider="anthropic", model="m", base_url=fake_anthropic.base_url,
                     api_key_env="EXO_TEST_LLM_KEY")
    fake_anthropic.enqueue(*[overloaded() for _ in range(6)])
    client = api(await make_token())
    failed = await post(client, {"model": "remote", "messages": [USER]})
    assert failed.status_code == 502
    assert error_of(failed)["type"] == "server_error" and "overloaded" in error_of(failed)["message"].lower()
    streamed = await post(client, {"model": "remote", "messages": [USER], "stream": True})
    assert streamed.status_code == 200
    events = [line async for line in streamed.streaming_content]
    assert json.loads(events[-1].removeprefix(b"data: "))["error"]["type"] == "server_error"
