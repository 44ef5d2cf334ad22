"""Remote MCP servers as agents' tool sources: a server made with the official SDK (`MCPServer`) on
loopback, added with `loadconfig`, called by the echo agent's `/tool` and by a scripted LLM through
the real runtime, sandbox-free (in-process channel layer, the real embedded session store)."""

import asyncio
import io
import os

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from agents.runtime.tools import load_toolbox
from agents.store import get_store
from mcp_remote.client import call_remote_tool
from mcp_remote.models import McpServer
from tests.fakes import anthropic_server
from tests.fakes.http import last_tool_result
from tests.mcp_fixtures import remote_mcp  # noqa: F401
from tests.runtime_fixtures import assert_gap_free, make_agent, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("fresh_layer", "process_store")]

OFFERED = ["add", "flood", "shout", "whoami"]


def server_tables(url: str, allow_private: bool = True) -> str:
    allow = 'allow_private_hosts = ["127.0.0.1"]\n' if allow_private else ""
    return f"""
[[mcp_servers]]
name = "remote"
url = "{url}"
headers_env = {{Authorization = "EXO_TEST_MCP_AUTH"}}
allowed_tools = {OFFERED!r}
timeout_ms = 10000
max_output_bytes = 1000
{allow}
[[mcp_servers]]
name = "slow"
url = "{url}"
allowed_tools = ["hang"]
timeout_ms = 300
{allow}
[[mcp_servers]]
name = "patient"
url = "{url}"
allowed_tools = ["hang"]
timeout_ms = 60000
{allow}"""


async def loadconfig(tmp_path, text: str) -> str:
    path = tmp_path / "exoclaw.toml"
    path.write_text(text)
    out = io.StringIO()
    await sync_to_async(call_command)("loadconfig", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def auth_env(monkeypatch):
    monkeypatch.setenv("EXO_TEST_MCP_AUTH", "Bearer remote-s3cret")


async def test_loadconfig_lists_the_servers_tools_and_dumpconfig_round_trips_the_table(remote_mcp, tmp_path, auth_env):
    out = await loadconfig(tmp_path, server_tables(remote_mcp.url))
    assert "mcp_servers: 3 created, 0 updated, 0 unchanged" in out
    remote = await McpServer.objects.aget(name="remote")
    assert [t["name"] for t in remote.tools] == ["add", "shout", "wipe_disk", "hang", "hangs_running", "whoami", "flood"]
    assert remote.tools[0]["input_schema"]["properties"]["a"]["type"] == "integer"
    dumped = io.StringIO()
    await sync_to_async(call_command)("dumpconfig", stdout=dumped, stderr=io.StringIO())
    text = dumped.getvalue()
    assert "[[mcp_servers]]" in text and 'Authorization = "EXO_TEST_MCP_AUTH"' in text
    assert "remote-s3cret" not in text, "only the variable's name is stored"
    again = await loadconfig(tmp_path, text)
    assert "mcp_servers: 0 created, 0 updated, 3 unchanged" in again


async def test_a_loopback_url_not_named_in_allow_private_hosts_is_refused(remote_mcp, tmp_path):
    with pytest.raises(CommandError) as refused:
        await loadconfig(tmp_path, server_tables(remote_mcp.url, allow_private=False))
    assert "mcp_servers[0]" in str(refused.value) and "127.0.0.1 is a loopback address" in str(refused.value)
    assert not await McpServer.objects.aexists()


async def test_the_echo_agent_calls_a_remote_tool_and_the_call_is_in_the_transcript(remote_mcp, tmp_path, auth_env,
                                                                                      connect):
    await loadconfig(tmp_path, server_tables(remote_mcp.url))
    await make_agent("helper", tools=["remote"])
    client = await connect()
    sent = await client.result("chat.send", {"text": '/tool remote.add {"a": 2, "b": 3}', "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert_gap_free(events)
    result = next(e for e in events if e["type"] == "tool_result")
    assert (result["name"], result["content"], result["is_error"], result["error_kind"]) == ("remote.add", "5", False, None)
    assert text_of(events) == "Tool remote.add returned: 5"
    run = await get_store().get_run(sent["run_id"])
    [call] = run["tool_calls"]
    assert (call["name"], call["outcome"], call["output"], call["input"]) == ("remote.add", "ok", "5", {"a": 2, "b": 3})
    assert call["duration_ms"] > 0
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert history[1]["content"][0] == {"type": "tool_use", "id": call["tool_use_id"], "name": "remote.add",
                                        "input": {"a": 2, "b": 3}}

    sent = await client.result("chat.send", {"text": "/tool remote.whoami {}", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert text_of(events) == "Tool remote.whoami returned: Bearer remote-s3cret", (
        "the header is read from the environment variable at call time")


async def test_a_scripted_llm_is_offered_only_the_allowed_tools_and_gets_the_result(remote_mcp, tmp_path, auth_env,
                                                                                     connect, fake_anthropic,
                                                                                     monkeypatch):
    monkeypatch.setenv("EXO_TEST_LLM_KEY", "sk-test")
    await loadconfig(tmp_path, server_tables(remote_mcp.url))
    await make_agent("helper", provider="anthropic", model="test-model", base_url=fake_anthropic.base_url,
                     api_key_env="EXO_TEST_LLM_KEY", tools=["remote", "slow.*"])
    fake_anthropic.responder = anthropic_server.tool_round_trip("remote__shout", {"text": "quiet please"})
    client = await connect()
    sent = await client.result("chat.send", {"text": "shout it", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert [e["type"] for e in events if e["type"] != "delta"] == ["tool_call", "tool_result", "done"]
    assert text_of(events) == "The tool said: QUIET PLEASE"
    first, second = fake_anthropic.wait_for_requests(2)
    offered = sorted(t["name"] for t in first.json["tools"])
    assert offered == sorted([f"remote__{t}" for t in OFFERED] + ["slow__hang"]), "wipe_disk is never offered"
    assert last_tool_result(second.json)["content"] == "QUIET PLEASE"


async def test_a_tool_outside_allowed_tools_is_never_offered_nor_called(remote_mcp, tmp_path, auth_env, connect):
    await loadconfig(tmp_path, server_tables(remote_mcp.url))
    assert "remote.wipe_disk" not in (await load_toolbox(["*"])).tools
    await make_agent("helper", tools=["*"])
    client = await connect()
    sent = await client.result("chat.send", {"text": "/tool remote.wipe_disk {}", "agent": "helper"})
    result = next(e for e in await client.finished(sent["run_id"]) if e["type"] == "tool_result")
    assert (result["is_error"], result["error_kind"]) == (True, "not_allowed")


async def test_a_server_that_hangs_is_cut_off_at_its_timeout_and_a_flood_at_its_output_limit(remote_mcp, tmp_path, auth_env, connect):
    await loadconfig(tmp_path, server_tables(remote_mcp.url))
    await make_agent("helper", tools=["slow", "remote"])
    client = await connect()
    sent = await client.result("chat.send", {"text": "/tool slow.hang {}", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    result = next(e for e in events if e["type"] == "tool_result")
    assert (result["is_error"], result["error_kind"]) == (True, "timeout")
    assert "did not answer within its 300 ms limit" in result["content"]
    run = await get_store().get_run(sent["run_id"])
    assert [c["outcome"] for c in run["tool_calls"]] == ["timeout"]

    sent = await client.result("chat.send", {"text": '/tool remote.flood {"size": 5000}', "agent": "helper"})
    result = next(e for e in await client.finished(sent["run_id"]) if e["type"] == "tool_result")
    assert (result["error_kind"], result["is_error"]) == ("invalid_output", True)
    assert "5000 bytes, more than its limit of 1000" in result["content"]

    # A far larger answer is not even read whole: the response is cut off past a few times the limit.
    sent = await client.result("chat.send", {"text": '/tool remote.flood {"size": 2000000}', "agent": "helper"})
    result = next(e for e in await client.finished(sent["run_id"]) if e["type"] == "tool_result")
    assert result["error_kind"] == "invalid_output" and "the server sent more than" in result["content"]


async def hangs_running(server: McpServer) -> int:
    text, _ = await call_remote_tool(server.endpoint(), "hangs_running", {}, os.environ)
    return int(text)


async def until_hangs_running(server: McpServer, count: int, timeout: float = 20.0) -> None:
    """Poll the remote server (directly, with exoclaw's client) until `count` calls of hang run there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (running := await hangs_running(server)) != count:
        assert loop.time() < deadline, f"{running} calls of hang still run on the remote server, not {count}"
        await asyncio.sleep(0.05)  # a poll interval: what ends the wait is the server's own count


async def test_aborting_a_run_cancels_its_call_on_the_remote_server(remote_mcp, tmp_path, auth_env, connect):
    await loadconfig(tmp_path, server_tables(remote_mcp.url))
    patient = await McpServer.objects.aget(name="patient")
    await until_hangs_running(patient, 0)
    await make_agent("helper", tools=["patient"])
    client = await connect()
    sent = await client.result("chat.send", {"text": "/tool patient.hang {}", "agent": "helper"})
    await until_hangs_running(patient, 1)
    assert await client.result("chat.abort", {"run_id": sent["run_id"]}) == {"run_id": sent["run_id"], "aborted": True}
    events = await client.finished(sent["run_id"])
    assert events[-1]["stop_reason"] == "aborted"
    # Its timeout is a minute away: only the cancellation ends the call on the server this soon.
    await until_hangs_running(patient, 0)


async def test_the_admin_adds_a_server_lists_its_tools_and_shows_only_variable_names(remote_mcp, admin_client, auth_env):
    form = {"name": "remote", "url": remote_mcp.url, "enabled": "on",
            "headers_env": '{"Authorization": "EXO_TEST_MCP_AUTH"}', "allowed_tools": '["add"]',
            "allow_private_hosts": '["127.0.0.1"]', "timeout_ms": "5000", "max_output_bytes": "1000"}
    saved = await sync_to_async(admin_client.post)("/admin/mcp_remote/mcpserver/add/", form)
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    server = await McpServer.objects.aget(name="remote")
    assert "hang" in [t["name"] for t in server.tools]
    page = (await sync_to_async(admin_client.get)(f"/admin/mcp_remote/mcpserver/{server.pk}/change/")).content.decode()
    assert "EXO_TEST_MCP_AUTH" in page and "remote-s3cret" not in page
    listing = (await sync_to_async(admin_client.get)("/admin/mcp_remote/mcpserver/")).content.decode()
    assert "<td class=\"field-offered\">add</td>" in listing

    refused = await sync_to_async(admin_client.post)("/admin/mcp_remote/mcpserver/add/", {
        **form, "name": "again", "allow_private_hosts": "[]"})
    assert refused.status_code == 200 and "is a loopback address" in refused.content.decode()
