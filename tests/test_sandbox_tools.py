"""Tool discovery on the Plugin model and the async tool API the agent runtime calls."""

import asyncio
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from agents.models import Agent
from sandbox.models import CapabilityGrant, Plugin
from sandbox.samples import register_samples
from sandbox.errors import SandboxError
from sandbox.tools import call_plugin, call_tool, list_tools
from tests.sandbox_fixtures import loopback_http, started_event, wasm_path  # noqa: F401


def make_plugin(name, wasm=None, **fields) -> Plugin:
    plugin = Plugin(name=name, wasm_path=str(wasm_path(wasm or name)), **fields)
    plugin.full_clean()
    plugin.save()
    return plugin


@pytest.mark.django_db
def test_mcp_style_plugin_is_discovered_with_all_its_tools():
    plugin = make_plugin("mcp_text")
    assert plugin.abi == "mcp"
    assert [t["name"] for t in plugin.tools] == ["upper", "reverse"]
    assert plugin.tools[0]["input_schema"]["required"] == ["text"]


@pytest.mark.django_db
def test_exoclaw_plugin_is_discovered():
    plugin = make_plugin("exo_text")
    assert plugin.abi == "exoclaw"
    assert plugin.tools == [
        {
            "name": "wordcount",
            "description": "Count the words in a text.",
            "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        }
    ]


@pytest.mark.django_db
def test_plain_plugin_uses_the_declared_tools():
    declared = [{"name": "shout", "description": "Upper-case text", "input_schema": {"type": "object"}, "input_arg": "text"}]
    plugin = make_plugin("plain_text", declared_tools=declared)
    assert plugin.abi == "plain" and plugin.tools == declared


@pytest.mark.django_db
def test_plain_plugin_without_declared_tools_is_refused():
    with pytest.raises(ValidationError, match="exports no describe; declare its tools"):
        make_plugin("plain_text")


@pytest.mark.django_db
def test_declaring_a_tool_the_plugin_does_not_export_is_refused():
    with pytest.raises(ValidationError, match="declared tool\\(s\\) whisper are not exports"):
        make_plugin("plain_text", declared_tools=[{"name": "whisper"}])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "lie, message",
    [
        ("no_call", "announces mcp-style tools, but the plug-in has no 'call' export"),
        ("not_json", "describe did not return JSON"),
        ("bad_schema", "input schema must be a JSON object schema"),
        ("bad_name", "is not 1-64 letters"),
    ],
)
def test_a_lying_describe_is_refused_with_a_clear_message(lie, message):
    with pytest.raises(ValidationError) as caught:
        make_plugin("liar", config={"lie": lie})
    assert message in " ".join(caught.value.messages)
    assert not Plugin.objects.filter(name="liar").exists()


@pytest.mark.django_db
def test_changing_the_wasm_rediscovers_the_tools(tmp_path):
    path = tmp_path / "tool.wasm"
    path.write_bytes(wasm_path("exo_text").read_bytes())
    plugin = Plugin(name="swapped", wasm_path=str(path))
    plugin.full_clean()
    plugin.save()
    path.write_bytes(wasm_path("mcp_text").read_bytes())
    plugin.sha256 = ""
    plugin.full_clean()
    assert plugin.abi == "mcp" and [t["name"] for t in plugin.tools] == ["upper", "reverse"]


@pytest.fixture
def abi_plugins(transactional_db):
    make_plugin("mcp_text")
    make_plugin("exo_text")
    make_plugin("plain_text", declared_tools=[{"name": "shout", "description": "Shout", "input_arg": "text"}])
    make_plugin("calc")


@pytest.mark.asyncio
async def test_list_tools_lists_every_enabled_plugins_tools_with_their_schemas(abi_plugins):
    await Plugin.objects.filter(name="exo_text").aupdate(enabled=False)
    tools = await list_tools()
    assert [t.qualified_name for t in tools] == ["calc.calc", "mcp_text.upper", "mcp_text.reverse", "plain_text.shout"]
    assert tools[0].description == "Evaluate an arithmetic expression with + - * / % ^ and parentheses, e.g. (2+3)*7."
    assert tools[0].input_schema["properties"]["expr"]["type"] == "string"


@pytest.mark.asyncio
async def test_a_plugin_in_each_abi_is_called(abi_plugins):
    assert (await call_tool("mcp_text", "upper", {"text": "shout"})).content == "SHOUT"
    assert (await call_tool("mcp_text", "reverse", {"text": "abc"})).content == "cba"
    assert (await call_tool("exo_text", "wordcount", {"text": "one two three"})).content == "3 words"
    assert (await call_tool("plain_text", "shout", {"text": "quiet"})).content == "QUIET"


@pytest.mark.asyncio
async def test_calc_answers_the_demo_question(abi_plugins):
    result = await call_tool("calc", "calc", {"expr": "6*7"})
    assert (result.content, result.is_error, result.error_kind) == ("42", False, None)
    assert result.duration_ms > 0


@pytest.mark.asyncio
async def test_bad_input_is_a_tool_error_not_a_sandbox_failure(abi_plugins):
    result = await call_tool("calc", "calc", {"expr": "6*"})
    assert result.is_error and result.error_kind is None
    assert result.content == "calc: unexpected end of expression at position 3"
    missing_arg = await call_tool("plain_text", "shout", {})
    assert missing_arg.is_error and "needs a string argument 'text'" in missing_arg.content


@pytest.mark.asyncio
async def test_sandbox_failures_come_back_as_results_with_their_kind(abi_plugins):
    unknown_plugin = await call_tool("nope", "x", {})
    assert (unknown_plugin.is_error, unknown_plugin.error_kind) == (True, "not_found")
    unknown_tool = await call_tool("mcp_text", "delete", {})
    assert unknown_tool.content == "not_found: plugin mcp_text has no tool 'delete' (it has: upper, reverse)"
    error_set = await call_tool("exo_text", "wordcount", {})
    assert (error_set.error_kind, error_set.content) == ("plugin_error", 'plugin_error: wordcount needs a string argument "text"')


@pytest.fixture
def http_plugin(transactional_db, loopback_http):
    plugin = make_plugin("http_get")
    trusted = Agent.objects.create(name="trusted", tools=["http_get"])
    Agent.objects.create(name="untrusted", tools=["http_get.fetch"])
    Agent.objects.create(name="no_tools", tools=[])
    CapabilityGrant.objects.create(plugin=plugin, agent=trusted, allowed_hosts=[f"127.0.0.1:{loopback_http}"])
    CapabilityGrant.objects.create(plugin=plugin, agent=None, allowed_hosts=[])
    return f"http://127.0.0.1:{loopback_http}/weather"


@pytest.mark.asyncio
async def test_the_agent_specific_grant_applies_to_that_agent_only(http_plugin):
    trusted = await call_tool("http_get", "fetch", {"url": http_plugin}, grant_scope="trusted")
    assert not trusted.is_error and json.loads(trusted.content)["path"] == "/weather"
    untrusted = await call_tool("http_get", "fetch", {"url": http_plugin}, grant_scope="untrusted")
    assert untrusted.error_kind == "host_denied" and http_plugin in untrusted.content
    anonymous = await call_tool("http_get", "fetch", {"url": http_plugin})
    assert anonymous.error_kind == "host_denied"


@pytest.fixture
def loop_plugin(transactional_db):
    plugin = make_plugin("loop", declared_tools=[{"name": "spin", "description": "Never returns"}])
    CapabilityGrant.objects.create(plugin=plugin, timeout_ms=30_000, max_concurrency=1)


@pytest.mark.asyncio
async def test_cancel_event_ends_a_tool_call_with_kind_cancelled(loop_plugin):
    started, on_start = started_event()
    cancel = asyncio.Event()
    task = asyncio.create_task(call_tool("loop", "spin", {}, cancel=cancel, on_start=on_start))
    await asyncio.wait_for(started.wait(), 5)
    cancel.set()
    result = await asyncio.wait_for(task, 5)
    assert (result.is_error, result.error_kind) == (True, "cancelled")
    assert result.content == "cancelled: the call was cancelled while it ran"


@pytest.mark.asyncio
async def test_cancelling_the_run_task_stops_the_tool_call(loop_plugin):
    started, on_start = started_event()
    task = asyncio.create_task(call_tool("loop", "spin", {}, on_start=on_start))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    # The grant allows one call at a time, so a second call can only start once the first has stopped.
    started_again, on_start_again = started_event()
    cancel = asyncio.Event()
    second = asyncio.create_task(call_tool("loop", "spin", {}, cancel=cancel, on_start=on_start_again))
    await asyncio.wait_for(started_again.wait(), 5)
    cancel.set()
    assert (await asyncio.wait_for(second, 5)).error_kind == "cancelled"


@pytest.mark.django_db
def test_register_samples_is_idempotent_and_keeps_operator_grants():
    first = register_samples()
    assert [p.name for p in first] == ["echo", "calc", "http_get", "read_file", "count_vowels"]
    grant = CapabilityGrant.objects.get(plugin__name="http_get", agent=None)
    grant.allowed_hosts = ["api.example.com"]
    grant.save()
    log = []
    register_samples(log=log.append)
    assert log == []
    assert Plugin.objects.count() == 5 and CapabilityGrant.objects.count() == 5
    assert CapabilityGrant.objects.get(plugin__name="http_get", agent=None).allowed_hosts == ["api.example.com"]
    read_file = CapabilityGrant.objects.get(plugin__name="read_file")
    assert read_file.allowed_paths[0]["guest"] == "/files" and read_file.allowed_paths[0]["read_only"] is True


@pytest.mark.django_db
def test_bootstrap_registers_the_samples():
    call_command("bootstrap", stdout=io.StringIO(), stderr=io.StringIO())
    calc = Plugin.objects.get(name="calc")
    assert calc.abi == "exoclaw" and calc.tools[0]["name"] == "calc"


@pytest.mark.asyncio
async def test_call_plugin_runs_any_export_under_the_effective_grant(http_plugin):
    request = json.dumps({"params": {"name": "fetch", "arguments": {"url": http_plugin}}}).encode()
    output = await call_plugin("http_get", "call", request, grant_scope="trusted")
    assert json.loads(json.loads(output)["content"][0]["text"])["path"] == "/weather"
    with pytest.raises(SandboxError) as caught:
        await call_plugin("http_get", "call", request)
    assert caught.value.kind == "host_denied"
    with pytest.raises(SandboxError) as caught:
        await call_plugin("http_get", "no_such_export", b"")
    assert caught.value.kind == "not_found"
