"""The sandbox's pure rules: grants, manifests, config and secrets, the ABIs, error mapping."""

import json
from types import SimpleNamespace

import pytest

from sandbox.abi import EXOCLAW, MCP, PLAIN, ToolDef, decode_result, encode_call, parse_declared, parse_describe
from sandbox.errors import SandboxError, classify
from sandbox.manifest import DENY_ALL, Grant, PathGrant, build_manifest, effective_grant, instance_config, narrowing_violations


class Row:
    """Stands in for a CapabilityGrant row: effective_grant only reads these attributes."""

    def __init__(self, agent, **fields):
        self.agent_id = None if agent is None else len(agent)
        self.agent = None if agent is None else SimpleNamespace(name=agent)
        defaults = dict(
            allowed_hosts=[], allowed_paths=[], memory_mb=16, timeout_ms=5000, max_http_response_bytes=1024,
            max_output_bytes=2048, max_concurrency=4, config={}, secret_env={}, http_secrets=SimpleNamespace(all=tuple),
        )
        for name, value in {**defaults, **fields}.items():
            setattr(self, name, value)


def test_agent_specific_grant_wins_over_the_default():
    rows = [Row(None, allowed_hosts=["default.example"]), Row("seven", allowed_hosts=["agent7.example"])]
    assert effective_grant(rows, "seven").allowed_hosts == ("agent7.example",)
    assert effective_grant(rows, "eight").allowed_hosts == ("default.example",)
    assert effective_grant(rows, None).allowed_hosts == ("default.example",)


def test_without_any_grant_nothing_is_allowed():
    grant = effective_grant([Row("three", allowed_hosts=["other-agent.example"])], "four")
    assert grant == DENY_ALL
    assert (grant.allowed_hosts, grant.allowed_paths, grant.memory_mb, grant.timeout_ms) == ((), (), 16, 5000)


def test_manifest_carries_the_grant():
    grant = Grant(
        allowed_hosts=("api.example.com",),
        allowed_paths=(PathGrant("/srv/data", "/data"), PathGrant("/srv/ref", "/ref", read_only=True)),
        memory_mb=4,
        timeout_ms=750,
        max_http_response_bytes=5000,
    )
    manifest = build_manifest(b"\0asm", "ab" * 32, grant)
    assert manifest == {
        "wasm": [{"data": b"\0asm", "hash": "ab" * 32}],
        # Extism's own HTTP is never linked (exoclaw's replaces it); were it linked, it would reach nothing.
        "allowed_hosts": [],
        "allowed_paths": {"/srv/data": "/data", "ro:/srv/ref": "/ref"},
        "memory": {"max_pages": 64, "max_http_response_bytes": 5000},
        "timeout_ms": 750,
    }


def test_fingerprint_covers_what_is_compiled_but_not_config_secrets_or_hosts():
    base = Grant(allowed_hosts=("a.example",))
    assert base.fingerprint == Grant(allowed_hosts=("a.example",), config={"k": "v"}, secret_env={"t": "TOKEN"}).fingerprint
    # Hosts are checked per request by exoclaw's http_request, not compiled in.
    assert base.fingerprint == Grant(allowed_hosts=("b.example",)).fingerprint
    assert base.fingerprint != Grant(allowed_hosts=("a.example",), timeout_ms=1).fingerprint
    assert base.fingerprint != Grant(allowed_paths=(PathGrant("/srv", "/srv"),)).fingerprint
    assert "TOKEN" not in repr(base.fingerprint)


def test_instance_config_merges_plugin_grant_and_secrets():
    grant = Grant(config={"units": "metric", "retries": 3}, secret_env={"api_key": "WEATHER_KEY"})
    config = instance_config({"units": "imperial", "lang": "en"}, grant, {"WEATHER_KEY": "s3cret"})
    assert config == {"units": "metric", "lang": "en", "retries": "3", "api_key": "s3cret"}


def test_a_missing_secret_names_the_variable_not_a_value():
    with pytest.raises(SandboxError) as caught:
        instance_config({}, Grant(secret_env={"api_key": "WEATHER_KEY"}), {})
    assert caught.value.kind == "not_found" and "WEATHER_KEY" in caught.value.message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/srv/data", PathGrant("/srv/data", "/srv/data")),
        ("/srv/data:/data", PathGrant("/srv/data", "/data")),
        ("/srv/data:/data:ro", PathGrant("/srv/data", "/data", True)),
        ("/srv/data:ro", PathGrant("/srv/data", "/srv/data", True)),
    ],
)
def test_path_grant_command_line_form(text, expected):
    assert PathGrant.parse(text) == expected


@pytest.mark.parametrize("text", ["data", "/a:b", "/a:/b:/c", ":ro"])
def test_bad_path_grant_forms_are_refused(text):
    with pytest.raises(ValueError):
        PathGrant.parse(text)


def test_narrowing_a_grant_is_allowed_and_widening_is_not():
    stored = Grant(allowed_hosts=("a.example",), allowed_paths=(PathGrant("/srv", "/srv"),), memory_mb=16, timeout_ms=5000)
    narrower = Grant(allowed_paths=(PathGrant("/srv/sub", "/sub", read_only=True),), memory_mb=8, timeout_ms=100)
    assert narrowing_violations(stored, narrower) == []
    wider = Grant(allowed_hosts=("b.example",), allowed_paths=(PathGrant("/etc", "/etc"),), memory_mb=64)
    assert narrowing_violations(stored, wider) == [
        "host b.example is not in the stored grant",
        "path /etc -> /etc is not in the stored grant",
        "memory_mb 64 is more than the stored 16",
    ]
    read_only = Grant(allowed_paths=(PathGrant("/srv", "/srv", read_only=True),))
    assert narrowing_violations(read_only, Grant(allowed_paths=(PathGrant("/srv", "/srv"),))) != []
    assert narrowing_violations(stored, Grant(allowed_paths=(PathGrant("/srvx", "/srvx"),))) != []


@pytest.mark.parametrize(
    "text, causes, cancelled, kind",
    [
        ("timeout", [], False, "timeout"),
        ("timeout", [], True, "cancelled"),
        ("oom", [], False, "out_of_memory"),
        ("Function not found: x", [], False, "not_found"),
        ("Unable to compile Extism plugin: Hash mismatch, found a but expected b", [], False, "hash_mismatch"),
        ("error while executing at wasm backtrace:\n 0: 0x1 - x!f", ["HTTP request to http://h/ is not allowed"], False, "host_denied"),
        ("error while executing at wasm backtrace:\n 0: 0x1 - x!f", ["wasm trap: wasm `unreachable` instruction executed"], False, "trap"),
        ("error while executing at wasm backtrace:\n 0: 0x1 - x!f", [], False, "trap"),
        ("host_denied: cannot open /etc/passwd", [], False, "host_denied"),
        ("the widget is not configured", [], False, "plugin_error"),
    ],
)
def test_extism_errors_map_to_one_kind_each(text, causes, cancelled, kind):
    error = classify(text, causes, cancelled=cancelled, timeout_ms=100, memory_mb=4)
    assert error.kind == kind
    assert "backtrace" not in error.message


def test_mcp_describe_and_call_shapes():
    describe = {"tools": [{"name": "fetch", "description": "Fetch a URL", "inputSchema": {"type": "object", "properties": {"url": {}}}}]}
    abi, tools = parse_describe(json.dumps(describe).encode())
    assert abi == MCP and tools == [ToolDef("fetch", "Fetch a URL", {"type": "object", "properties": {"url": {}}})]
    function, data = encode_call(MCP, tools[0], {"url": "http://x"})
    assert function == "call"
    assert json.loads(data)["params"] == {"name": "fetch", "arguments": {"url": "http://x"}}
    result = {"content": [{"type": "text", "text": "a"}, {"type": "image", "mimeType": "image/png", "data": "…"}], "isError": True}
    assert decode_result(MCP, json.dumps(result).encode()) == ("a\n[image content image/png]", True)


def test_exoclaw_describe_and_call_shapes():
    abi, tools = parse_describe(b'{"name": "calc", "description": "Arithmetic", "input_schema": {"type": "object"}}')
    assert abi == EXOCLAW and tools[0].name == "calc"
    assert encode_call(EXOCLAW, tools[0], {"expr": "1+1"}) == ("handle_tool_call", b'{"expr": "1+1"}')
    assert decode_result(EXOCLAW, b'{"content": "2", "is_error": false}') == ("2", False)
    assert decode_result(EXOCLAW, b'{"content": "bad", "is_error": true}') == ("bad", True)
    assert decode_result(EXOCLAW, b"plain words") == ("plain words", False)
    assert decode_result(EXOCLAW, b'{"other": 1}') == ('{"other": 1}', False)


def test_channel_adapter_describe_has_no_tools():
    assert parse_describe(b'{"type": "channel_adapter"}') == ("channel_adapter", [])


def test_plain_declared_tools_with_raw_input():
    tools = parse_declared([{"name": "count_vowels", "description": "Count", "input_arg": "text"}])
    assert encode_call(PLAIN, tools[0], {"text": "Hello"}) == ("count_vowels", b"Hello")
    with pytest.raises(ValueError, match="needs a string argument 'text'"):
        encode_call(PLAIN, tools[0], {})
    json_tool = parse_declared([{"name": "shout"}])[0]
    assert encode_call(PLAIN, json_tool, {"a": 1}) == ("shout", b'{"a": 1}')


@pytest.mark.parametrize(
    "output, message",
    [
        (b"I am a tool", "did not return JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"tools": "many"}', "must be a list"),
        (b'{"tools": [{"name": "a b/c", "inputSchema": {}}]}', "is not 1-64 letters"),
        (b'{"tools": [{"name": "x", "inputSchema": "any"}]}', "input schema"),
        (b'{"tools": [{"name": "x", "inputSchema": {}}, {"name": "x", "inputSchema": {}}]}', "twice"),
        (b'{"description": "no name"}', "neither"),
    ],
)
def test_lying_describe_output_is_invalid_output(output, message):
    with pytest.raises(SandboxError) as caught:
        parse_describe(output)
    assert caught.value.kind == "invalid_output" and message in caught.value.message


def test_malformed_mcp_results_are_invalid_output():
    for output in (b"not json", b'{"content": "text"}', b'{"content": ["x"]}', b"\xff\xfe"):
        with pytest.raises(SandboxError) as caught:
            decode_result(MCP, output)
        assert caught.value.kind == "invalid_output"


def test_path_grants_are_compared_resolved_not_as_strings(tmp_path):
    (tmp_path / "granted").mkdir()
    (tmp_path / "link").symlink_to("/etc")
    stored = PathGrant(str(tmp_path / "granted"), "/g")
    assert not stored.covers(PathGrant(f"{tmp_path}/granted/../../../../../../../../etc", "/x", read_only=True))
    assert not PathGrant(str(tmp_path), "/t").covers(PathGrant(str(tmp_path / "link"), "/x"))
    assert stored.covers(PathGrant(f"{tmp_path}/granted/./", "/g"))
