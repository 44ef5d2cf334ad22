"""`manage.py runplugin`: plugins run by hand, as a process (exit codes, stdout vs stderr) and in-process."""

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Agent
from sandbox.models import CapabilityGrant, HttpSecret, Plugin
from tests.net_fixtures import api, https_api, tls_ca  # noqa: F401
from tests.sandbox_fixtures import ROOT, loopback_http, wasm_path  # noqa: F401


def runplugin(*args, stdin=None):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exoclaw.settings_test"}
    return subprocess.run(
        [sys.executable, "manage.py", "runplugin", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, input=stdin, timeout=60,
    )


def test_a_third_party_plain_plugin_runs_from_its_path():
    done = runplugin(wasm_path("count_vowels"), "count_vowels", "--input", "Hello World")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"count": 3, "total": 3, "vowels": "aeiouAEIOU"}
    assert "compile" in done.stderr and "call" in done.stderr and "compile" not in done.stdout


def test_a_failing_plugin_exits_1_with_the_error_kind():
    done = runplugin(wasm_path("loop"), "spin", "--timeout-ms", "200")
    assert done.returncode == 1
    assert "error: timeout: the call did not finish within its 200 ms limit" in done.stderr
    assert done.stdout == ""


def test_usage_errors_exit_2():
    done = runplugin(wasm_path("echo"))
    assert done.returncode == 2 and "give exactly one of FUNCTION, --tool NAME or --describe" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["echo", "--allow-path", "relative/dir"], "--allow-path 'relative/dir': give HOST"),
        (["echo", "--config", "novalue"], "--config 'novalue': give KEY=VALUE"),
        (["--tool", "echo", "--args", "[1]"], "--args must be a JSON object"),
        (["echo", "--repeat", "0"], "--repeat must be at least 1"),
        (["echo", "--timeout-ms", "0"], "--timeout-ms must be at least 1"),
        (["echo", "--memory-mb", "-3"], "--memory-mb must be at least 1"),
    ],
)
def test_bad_flags_are_usage_errors(args, message):
    with pytest.raises(CommandError, match=message) as caught:
        run_in_process(str(wasm_path("echo")), *args)
    assert caught.value.returncode == 2


def test_a_missing_wasm_path_is_a_usage_error():
    with pytest.raises(CommandError, match="no .wasm file at tests/plugins/missing.wasm"):
        run_in_process("tests/plugins/missing.wasm", "echo")


def test_a_path_runs_under_the_flags_alone(loopback_http):
    url = f"http://127.0.0.1:{loopback_http}/flags"
    args = ["--tool", "fetch", "--args", json.dumps({"url": url})]
    denied = runplugin(wasm_path("http_get"), *args)
    assert denied.returncode == 1 and f"error: host_denied: HTTP request refused (not_granted): {url}:" in denied.stderr
    assert f"http GET 127.0.0.1:{loopback_http}/flags: refused: not_granted" in denied.stderr
    allowed = runplugin(wasm_path("http_get"), *args, "--allow-host", f"127.0.0.1:{loopback_http}")
    assert allowed.returncode == 0, allowed.stderr
    assert f"http GET 127.0.0.1:{loopback_http}/flags: 200, 53 bytes," in allowed.stderr
    assert json.loads(allowed.stdout) == {"path": "/flags", "greeting": "hello from loopback"}


def test_https_trusts_the_ca_bundle_setting(https_api, tls_ca, settings):
    args = [str(wasm_path("http_get")), "--tool", "fetch", "--args",
            json.dumps({"url": https_api.url("/private-ca", host="localhost")}), "--allow-host", f"localhost:{https_api.port}"]
    with pytest.raises(SystemExit):
        run_in_process(*args)  # certifi's bundle does not know the test CA
    assert https_api.seen == []
    settings.SANDBOX_HTTP_CA_BUNDLE = str(tls_ca.path)
    out, _ = run_in_process(*args)
    assert [s.path for s in https_api.seen] == ["/private-ca"]
    assert json.loads(out)["server"] == "https-api"


def test_wasi_paths_from_flags(tmp_path):
    (tmp_path / "notes.txt").write_text("from the host")
    out, _ = run_in_process(
        str(wasm_path("read_file")), "--wasi", "--allow-path", f"{tmp_path}:/docs:ro",
        "--tool", "read_file", "--args", '{"path": "/docs/notes.txt"}',
    )
    assert out.strip() == "from the host"


def test_input_from_stdin_and_from_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"piped in")))
    assert run_in_process(str(wasm_path("echo")), "echo", "--input", "-")[0].strip() == "piped in"
    (tmp_path / "input.json").write_text('{"a": [1, 2]}')
    out, _ = run_in_process(str(wasm_path("echo")), "echo", "--input", f"@{tmp_path / 'input.json'}")
    assert out == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'


def run_in_process(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("runplugin", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def registered(db, tmp_path, loopback_http):
    plugin = Plugin(name="http_get", wasm_path=str(wasm_path("http_get")))
    plugin.full_clean()
    plugin.save()
    CapabilityGrant.objects.create(plugin=plugin, allowed_hosts=[f"127.0.0.1:{loopback_http}"], timeout_ms=3000)
    agent = Agent.objects.create(name="narrow", tools=["*"])
    CapabilityGrant.objects.create(plugin=plugin, agent=agent, allowed_hosts=[])
    return plugin


def test_a_registered_plugin_runs_under_its_stored_grant(registered, loopback_http):
    url = f"http://127.0.0.1:{loopback_http}/stored"
    out, err = run_in_process("http_get", "--tool", "fetch", "--args", json.dumps({"url": url}))
    assert json.loads(out)["path"] == "/stored"
    with pytest.raises(SystemExit) as exited:
        run_in_process("http_get", "--tool", "fetch", "--args", json.dumps({"url": url}), "--agent", "narrow")
    assert exited.value.code == 1


def test_a_registered_plugin_sends_its_stored_http_secret(db, api, monkeypatch):
    monkeypatch.setenv("EXOCLAW_TEST_API_KEY", "value-from-the-environment")
    plugin = Plugin(name="http_get", wasm_path=str(wasm_path("http_get")))
    plugin.full_clean()
    plugin.save()
    grant = CapabilityGrant.objects.create(plugin=plugin, allowed_hosts=[f"127.0.0.1:{api.port}"])
    HttpSecret.objects.create(grant=grant, host=f"127.0.0.1:{api.port}", query="appid", secret_env="EXOCLAW_TEST_API_KEY")
    run_in_process("http_get", "--tool", "fetch", "--args", json.dumps({"url": api.url("/ok?q=rome")}))
    assert api.seen[0].query == {"q": ["rome"], "appid": ["value-from-the-environment"]}


def test_flags_may_narrow_but_not_widen_a_stored_grant(registered, loopback_http):
    run_in_process("http_get", "--describe", "--timeout-ms", "100", "--allow-host", f"127.0.0.1:{loopback_http}")
    with pytest.raises(CommandError, match="host 127.0.0.1 is not in the stored grant"):
        run_in_process("http_get", "--describe", "--allow-host", "127.0.0.1")
    with pytest.raises(CommandError, match="host example.com is not in the stored grant.*--unsafe-override"):
        run_in_process("http_get", "--describe", "--allow-host", "example.com")
    with pytest.raises(CommandError, match="timeout_ms 9000 is more than the stored 3000"):
        run_in_process("http_get", "--describe", "--timeout-ms", "9000")
    out, err = run_in_process("http_get", "--describe", "--allow-host", "example.com", "--unsafe-override")
    assert "warning: --unsafe-override: host example.com is not in the stored grant" in err
    assert json.loads(out)["abi"] == "mcp"


def test_repeat_prints_min_median_max(registered):
    out, err = run_in_process(str(wasm_path("echo")), "echo", "--input", "x", "--repeat", "5")
    assert out.strip() == "x"
    assert "5 calls:" in err and "instantiate min" in err and "median" in err and "max" in err


def test_unknown_names_are_usage_errors(registered):
    with pytest.raises(CommandError, match="no plugin named 'nope'.*plugins: http_get"):
        run_in_process("nope", "--describe")
    with pytest.raises(CommandError, match="http_get has no tool 'post' \\(it has: fetch\\)"):
        run_in_process("http_get", "--tool", "post")


def test_describe_of_a_registered_plain_plugin_lists_its_declared_tools(db):
    from sandbox.samples import register_samples

    register_samples()
    out, _ = run_in_process("count_vowels", "--describe")
    described = json.loads(out)
    assert described["abi"] == "plain"
    assert [t["name"] for t in described["tools"]] == ["count_vowels"]


def test_a_path_flag_that_climbs_out_of_the_stored_grant_with_dotdot_is_refused(db, tmp_path):
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "inside.txt").write_text("granted text")
    plugin = Plugin(name="read_file", wasm_path=str(wasm_path("read_file")), wasi=True)
    plugin.full_clean()
    plugin.save()
    CapabilityGrant.objects.create(plugin=plugin, allowed_paths=[{"host": str(granted), "guest": "/files", "read_only": True}])
    escape = f"{granted}{'/..' * 12}/etc:/x:ro"
    with pytest.raises(CommandError, match=r"path /etc -> /x \(ro\) is not in the stored grant.*--unsafe-override"):
        run_in_process("read_file", "--allow-path", escape, "--tool", "read_file", "--args", '{"path": "/x/hostname"}')
    # A deeper directory of the grant, written with .. that stays inside, still narrows it.
    (granted / "sub").mkdir()
    (granted / "sub" / "deep.txt").write_text("deeper")
    out, _ = run_in_process("read_file", "--allow-path", f"{granted}/sub/../sub:/s:ro",
                            "--tool", "read_file", "--args", '{"path": "/s/deep.txt"}')
    assert out.strip() == "deeper"
