"""Config as code: loadconfig and dumpconfig, the example file, and refusing bad files whole."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent
from exoclaw.configfile import ConfigError, apply, read
from routing.models import Binding
from routing.resolver import resolve_route
from sandbox.models import CapabilityGrant, HttpSecret, Plugin, sha256_of

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "exoclaw" / "examples" / "exoclaw.toml"
SAMPLES = Path(__file__).resolve().parent.parent / "sandbox" / "plugins"
# Real sample plugins: saving a plugin runs tool discovery on its .wasm.
WASM = (SAMPLES / "echo.wasm").read_bytes()
CALC_WASM = (SAMPLES / "calc.wasm").read_bytes()


@pytest.fixture
def project(tmp_path):
    """A folder laid out like the repository: exoclaw/examples/exoclaw.toml and the sample plugins it names."""
    (tmp_path / "exoclaw" / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLE, tmp_path / "exoclaw" / "examples" / "exoclaw.toml")
    plugins = tmp_path / "sandbox" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "echo.wasm").write_bytes(WASM)
    (plugins / "calc.wasm").write_bytes(CALC_WASM)
    return tmp_path


def rows() -> dict:
    """Every row the config file governs, as stored."""
    return {model.__name__: list(model.objects.order_by("id").values())
            for model in (Agent, Plugin, CapabilityGrant, HttpSecret, Binding)}


def snapshot() -> dict:
    return {name: [{k: v for k, v in r.items() if k not in ("created", "updated")} for r in table]
            for name, table in rows().items()}


def by_name() -> dict:
    """The rows without ids or timestamps, foreign keys as names, in a stable order."""
    agents = dict(Agent.objects.values_list("id", "name"))
    plugins = dict(Plugin.objects.values_list("id", "name"))
    grants = {g.id: (g.plugin.name, g.agent and g.agent.name)
              for g in CapabilityGrant.objects.select_related("plugin", "agent")}
    names = {"agent_id": agents, "plugin_id": plugins, "grant_id": grants}
    out = {}
    for name, table in snapshot().items():
        out[name] = sorted(
            ({k: names[k].get(v) if k in names else v for k, v in r.items() if k != "id"} for r in table),
            key=repr,
        )
    return out


def load(path, *extra) -> str:
    out = io.StringIO()
    call_command("loadconfig", str(path), *extra, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def write(folder: Path, text: str, name="exoclaw.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def refused(path) -> str:
    before = snapshot()
    with pytest.raises(CommandError) as e:
        load(path)
    assert snapshot() == before, "a refused file must change nothing"
    return str(e.value)


def test_the_example_loads_and_routes(project):
    out = load(project / "exoclaw" / "examples" / "exoclaw.toml")
    assert out.splitlines() == [
        "agents: 3 created, 0 updated, 0 unchanged",
        "plugins: 2 created, 0 updated, 0 unchanged",
        "grants: 1 created, 0 updated, 0 unchanged",
        "bindings: 3 created, 0 updated, 0 unchanged",
        "channels: 0 created, 0 updated, 0 unchanged",
        "mcp_servers: 0 created, 0 updated, 0 unchanged",
    ]
    assistant = Agent.objects.get(name="assistant")
    assert (assistant.provider, assistant.model, assistant.tools, assistant.busy_policy, assistant.temperature) == (
        "anthropic", "claude-sonnet-4-5", ["calc", "echo.echo"], "reject", 0.3
    )
    assert assistant.system_prompt == "You are a concise assistant. Use the calculator for arithmetic.\n"
    assert not Agent.objects.get(name="local").enabled
    echo = Plugin.objects.get(name="echo")
    assert echo.wasm_path == str(project / "sandbox" / "plugins" / "echo.wasm")
    assert echo.sha256 == sha256_of(WASM) and echo.config == {"greeting": "hello"}
    grant = CapabilityGrant.objects.get()
    assert (grant.plugin.name, grant.agent, grant.timeout_ms, grant.memory_mb) == ("calc", None, 2000, 16)
    assert resolve_route(channel="web", peer="someone").agent == "assistant"
    assert resolve_route(channel="web", peer="tester").agent == "demo"
    assert resolve_route(channel="telegram", peer="someone").agent == "demo"


def test_the_example_binds_the_channel_the_web_chat_sends():
    page = (ROOT / "exoclaw" / "templates" / "chat.html").read_text()
    script = (ROOT / "exoclaw" / "static" / "exoclaw" / "chat.js").read_text()
    assert '<input id="channel" value="web"' in page and 'ui.channel.value = "web";' in script
    assert 'channel = "web"' in EXAMPLE.read_text() and "webchat" not in EXAMPLE.read_text()
    routing_doc = (ROOT / "docs" / "routing.md").read_text()
    assert "`web` (the web chat)" in routing_doc and "webchat" not in routing_doc


def test_loading_twice_changes_nothing(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    first = rows()
    out = load(project / "exoclaw" / "examples" / "exoclaw.toml")
    assert out.splitlines() == [
        "agents: 0 created, 0 updated, 3 unchanged",
        "plugins: 0 created, 0 updated, 2 unchanged",
        "grants: 0 created, 0 updated, 1 unchanged",
        "bindings: 0 created, 0 updated, 3 unchanged",
        "channels: 0 created, 0 updated, 0 unchanged",
        "mcp_servers: 0 created, 0 updated, 0 unchanged",
    ]
    assert rows() == first, "an unchanged row must not even be saved again"


def test_load_dump_load_round_trips_to_identical_rows(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    grant = CapabilityGrant.objects.create(
        plugin=Plugin.objects.get(name="echo"), agent=Agent.objects.get(name="assistant"),
        allowed_hosts=["api.example.com"], allowed_paths=[{"host": "/srv", "guest": "/data", "read_only": True}],
        secret_env={"api_key": "EXAMPLE_KEY"}, config={"n": 1.5, "deep": {"list": [1, "two"]}},
        http_requests_per_call=3, http_requests_per_minute=30,
    )
    HttpSecret.objects.create(grant=grant, host="https://api.example.com", header="Authorization",
                              format="Bearer {secret}", secret_env="EXAMPLE_API_KEY")
    HttpSecret.objects.create(grant=grant, host="api.weather.example", query="appid", secret_env="WEATHER_KEY")
    Binding.objects.create(agent=Agent.objects.get(name="local"), guild="g1", team="t1", enabled=False)
    dumped = project / "exoclaw" / "examples" / "dumped.toml"
    call_command("dumpconfig", "-o", str(dumped), stderr=io.StringIO())
    text = dumped.read_text()
    assert text.count("[[plugins.grant.http_secrets]]") == 2 and "http_requests_per_call = 3" in text
    assert 'wasm = "../sandbox/plugins/echo.wasm"' not in text  # paths inside the folder only
    assert f'wasm = "{project}/sandbox/plugins/echo.wasm"' in text
    stored = rows()
    load(dumped)
    assert rows() == stored, "loading the dump into the same database must change nothing"
    named = by_name()
    Agent.objects.all().delete()
    Plugin.objects.all().delete()
    Binding.objects.all().delete()
    load(dumped)
    assert by_name() == named, "loading the dump into an empty database must give the same rows"
    call_command("dumpconfig", "-o", str(project / "exoclaw" / "examples" / "again.toml"), stderr=io.StringIO())
    assert (project / "exoclaw" / "examples" / "again.toml").read_text() == text


def test_dump_writes_paths_relative_to_the_output_folder(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    call_command("dumpconfig", "-o", str(project / "dump.toml"), stderr=io.StringIO())
    text = (project / "dump.toml").read_text()
    assert 'wasm = "sandbox/plugins/echo.wasm"' in text
    before = snapshot()
    load(project / "dump.toml")
    assert snapshot() == before


def test_dump_to_stdout_uses_absolute_paths(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    out = io.StringIO()
    call_command("dumpconfig", stdout=out)
    assert f'wasm = "{project}/sandbox/plugins/calc.wasm"' in out.getvalue()
    assert out.getvalue().startswith("# exoclaw configuration, written by `python manage.py dumpconfig`.")


def test_a_broken_file_changes_nothing_and_names_the_line(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    path = write(project, """
[[agents]]
name = "demo"
provider = "echo"
system_prompt = "changed, but must not be saved"

[[agents]]
name = "new-agent"

[[agents]]
name = "broken"
provider = "gemini"
""")
    message = refused(path)
    assert message == (
        f"{path} refused, nothing changed (1 problem):\n"
        f"{path}:12: agents[2].provider: Value 'gemini' is not a valid choice."
    )
    assert not Agent.objects.filter(name="new-agent").exists()


def test_every_problem_is_reported_at_once(project):
    path = write(project, """
[[agents]]
name = "a"
tools = ["bad pattern!"]
max_tokens = 0

[[plugins]]
name = "p"
wasm = "missing.wasm"

[[bindings]]
agent = "nobody"
channel = "webchat"
""")
    message = refused(path)
    assert f"{path}:4: agents[0].tools: Not a tool pattern: bad pattern!" in message
    assert f"{path}:5: agents[0].max_tokens: Ensure this value is greater than or equal to 1." in message
    assert f"{path}:9: plugins[0].wasm: No file at {project}/missing.wasm." in message
    assert f"{path}:12: bindings[0].agent: no agent named 'nobody' (define it under [[agents]])" in message
    assert "(4 problems)" in message


def test_a_syntax_error_names_its_line(project):
    path = write(project, '[[agents]]\nname = "a"\nprovider = echo\n')
    assert f"{path}:3: not valid TOML: Invalid value (at line 3, column 12)" in refused(path)


@pytest.mark.parametrize(
    "text,problem",
    [
        ('[[agent]]\nname = "a"\n', "1: agent: unknown table; the file holds agents, plugins, bindings"),
        ('[agents]\nname = "a"\n', "1: agents: write it as an array of tables, [[agents]]"),
        ('[[agents]]\nname = "a"\nprovder = "echo"\n', "3: agents[0].provder: unknown key; known keys are name, provider"),
        ('[[agents]]\nname = "a"\nmax_tokens = "many"\n', "3: agents[0].max_tokens: must be a whole number"),
        ('[[agents]]\nname = "a"\nenabled = 1\n', "3: agents[0].enabled: must be true or false"),
        ('[[agents]]\nname = "a"\nmax_tokens = true\n', "3: agents[0].max_tokens: must be a whole number"),
        ('[[agents]]\nmodel = "x"\n', "1: agents[0]: missing 'name'"),
        ('[[plugins]]\nname = "p"\n', "1: plugins[0]: missing 'wasm'"),
        ('[[bindings]]\nchannel = "x"\n', "1: bindings[0]: missing 'agent'"),
        ('[[plugins]]\nname = "p"\nwasm = "x"\n[plugins.grant]\nmemory = 3\n', "5: plugins[0].grant.memory: unknown key"),
        ('[[agents]]\nname = "a"\n[[agents]]\nname = "a"\n', "3: agents[1]: same name as agents[0]"),
        # The second plugin's secret sits in its own (implicit) grant, not in the first plugin's.
        ('[[plugins]]\nname = "p"\nwasm = "x"\n[plugins.grant]\n[[plugins.grant.http_secrets]]\nhost = "a.test"\n'
         'header = "Authorization"\nsecret_env = "A"\n[[plugins]]\nname = "q"\nwasm = "y"\n'
         '[[plugins.grant.http_secrets]]\nhost = "b.test"\nheader = "Authorization"\n',
         "12: plugins[1].grant.http_secrets[0]: missing 'secret_env'"),
        ('[[agents]]\nname = "a"\n[[bindings]]\nagent = "a"\n[[bindings]]\nagent = "a"\nchannel = ""\n',
         "5: bindings[1]: same match (channel, account, peer, guild, team) as bindings[0]"),
    ],
)
def test_mistakes_are_named_by_line_and_path(project, text, problem):
    path = write(project, text)
    assert f"{path}:{problem}" in refused(path)


def test_tables_written_inline_are_named_by_path(project):
    path = write(project, 'agents = [{ name = "a", provider = "nope" }]\n')
    assert f"{path}: agents[0].provider: Value 'nope' is not a valid choice." in refused(path)


def test_plugin_checks_sha256_and_grant_checks_paths(project):
    path = write(project, f"""
[[plugins]]
name = "echo"
wasm = "sandbox/plugins/echo.wasm"
sha256 = "{'0' * 64}"

[[plugins]]
name = "calc"
wasm = "{project}/sandbox/plugins/calc.wasm"
[plugins.grant]
allowed_paths = [{{ host = "relative/dir" }}]
""")
    message = refused(path)
    assert f"{path}:5: plugins[0].sha256: The .wasm's sha256 is {sha256_of(WASM)}, not {'0' * 64}." in message
    assert f"{path}:11: plugins[1].grant.allowed_paths: Give a list like" in message


def test_grants_narrowed_to_agents_are_created_and_updated(project):
    text = """
[[agents]]
name = "a"

[[plugins]]
name = "echo"
wasm = "sandbox/plugins/echo.wasm"
[[plugins.grant]]
memory_mb = 8
[[plugins.grant]]
agent = "a"
allowed_hosts = ["api.example.com"]
timeout_ms = 100
"""
    load(write(project, text))
    grants = {g.agent and g.agent.name: g for g in CapabilityGrant.objects.select_related("agent")}
    assert grants[None].memory_mb == 8 and grants["a"].allowed_hosts == ["api.example.com"]
    assert grants["a"].timeout_ms == 100
    out = load(write(project, text.replace("timeout_ms = 100", "timeout_ms = 200")))
    assert "grants: 0 created, 1 updated, 1 unchanged" in out
    assert CapabilityGrant.objects.get(agent__name="a").timeout_ms == 200
    path = write(project, text + '[[plugins.grant]]\nagent = "a"\n', "dup.toml")
    assert f"{path}:14: plugins[0].grant[2]: a second grant for the same agent" in refused(path)


def test_keys_left_out_return_to_their_defaults(project):
    load(write(project, '[[agents]]\nname = "a"\nmodel = "m"\nmax_tokens = 99\ntools = ["calc"]\n'))
    out = load(write(project, '[[agents]]\nname = "a"\n'))
    assert "agents: 0 created, 1 updated, 0 unchanged" in out
    agent = Agent.objects.get(name="a")
    assert (agent.model, agent.max_tokens, agent.tools) == ("", 1024, [])


def test_bindings_are_found_by_their_match(project):
    agent = Agent.objects.create(name="old")
    existing = Binding.objects.create(agent=agent, channel="webchat")
    load(write(project, '[[agents]]\nname = "new"\n[[bindings]]\nagent = "new"\nchannel = "webchat"\nnote = "n"\n'))
    existing.refresh_from_db()
    assert (existing.agent.name, existing.note, Binding.objects.count()) == ("new", "n", 1)


def test_rows_the_file_does_not_name_are_left_alone(project):
    Agent.objects.create(name="kept")
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    assert Agent.objects.filter(name="kept").exists()


def test_check_validates_without_changing_anything_and_says_what_it_would_do(project):
    out = load(project / "exoclaw" / "examples" / "exoclaw.toml", "--check")
    assert out.splitlines()[0] == "agents: would create 3, would update 0, 0 unchanged"
    assert not Agent.objects.exists()
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    Agent.objects.filter(name="demo").update(max_tokens=7)
    out = load(project / "exoclaw" / "examples" / "exoclaw.toml", "--check")
    assert out.splitlines()[0] == "agents: would create 0, would update 1, 2 unchanged"
    assert Agent.objects.get(name="demo").max_tokens == 7


def test_max_output_bytes_round_trips_through_load_and_dump(project):
    text = """
[[plugins]]
name = "echo"
wasm = "sandbox/plugins/echo.wasm"
[plugins.grant]
max_output_bytes = 2048
"""
    load(write(project, text))
    assert CapabilityGrant.objects.get().max_output_bytes == 2048
    out = io.StringIO()
    call_command("dumpconfig", stdout=out)
    assert "max_output_bytes = 2048" in out.getvalue()
    load(write(project, text.replace("2048", "4096")))
    assert CapabilityGrant.objects.get().max_output_bytes == 4096


def test_dump_writes_no_empty_grant_table(project):
    load(write(project, '[[plugins]]\nname = "echo"\nwasm = "sandbox/plugins/echo.wasm"\n[plugins.grant]\n'))
    assert CapabilityGrant.objects.count() == 1  # a grant with every default: what no grant means
    out = io.StringIO()
    call_command("dumpconfig", stdout=out)
    assert "grant" not in out.getvalue(), out.getvalue()


def test_read_and_apply_are_callable_without_the_command(project):
    config = read(project / "exoclaw" / "examples" / "exoclaw.toml")
    assert [a["name"] for a in config.data["agents"]] == ["demo", "assistant", "local"]
    apply(config)
    with pytest.raises(ConfigError) as e:
        read(project / "nope.toml")
    assert e.value.problems == [f"{project}/nope.toml: cannot read: No such file or directory"]


def test_dump_refuses_a_value_toml_cannot_hold(project):
    load(project / "exoclaw" / "examples" / "exoclaw.toml")
    Plugin.objects.filter(name="echo").update(config={"retries": None})
    with pytest.raises(CommandError, match=r"plugins\[1\]\.config\.retries: TOML has no null value"):
        call_command("dumpconfig", stdout=io.StringIO())


def test_an_uploaded_wasm_stays_an_upload_through_a_round_trip(project):
    from django.core.files.base import ContentFile

    plugin = Plugin(name="uploaded")
    plugin.wasm_file.save("uploaded.wasm", ContentFile(WASM), save=False)
    plugin.full_clean()
    plugin.save()
    call_command("dumpconfig", "-o", str(project / "dump.toml"), stderr=io.StringIO())
    assert f'wasm = "{plugin.wasm_file.path}"' in (project / "dump.toml").read_text()
    out = load(project / "dump.toml")
    assert "plugins: 0 created, 0 updated, 1 unchanged" in out
    plugin.refresh_from_db()
    assert plugin.wasm_file and not plugin.wasm_path


def test_http_secrets_are_written_as_tables_under_their_grant_and_checked(project):
    text = """
[[plugins]]
name = "echo"
wasm = "sandbox/plugins/echo.wasm"
[plugins.grant]
allowed_hosts = ["https://api.example.com"]
http_requests_per_minute = 10

[[plugins.grant.http_secrets]]
host = "https://api.example.com"
header = "Authorization"
format = "Bearer {secret}"
secret_env = "EXAMPLE_API_KEY"
"""
    load(write(project, text))
    grant = CapabilityGrant.objects.get()
    assert [s.as_table() for s in grant.http_secrets.all()] == [
        {"host": "https://api.example.com", "header": "Authorization", "format": "Bearer {secret}",
         "secret_env": "EXAMPLE_API_KEY"}]
    assert grant.http_requests_per_minute == 10
    assert "grants: 0 created, 0 updated, 1 unchanged" in load(project / "exoclaw.toml")
    bad = write(project, text.replace('format = "Bearer {secret}"', 'query = "key"'), "bad.toml")
    assert f"{bad}:9: plugins[0].grant.http_secrets[0]: give either header (e.g. Authorization) or query" in refused(bad)
    bad = write(project, text.replace('format = "Bearer {secret}"', 'token = "abc"'), "bad.toml")
    assert f"{bad}:12: plugins[0].grant.http_secrets[0].token: unknown key" in refused(bad)

    # The file's secrets replace the grant's: another one, then none.
    query = text.replace('header = "Authorization"\nformat = "Bearer {secret}"', 'query = "appid"')
    assert "grants: 0 created, 1 updated, 0 unchanged" in load(write(project, query))
    assert [s.as_table() for s in grant.http_secrets.all()] == [
        {"host": "https://api.example.com", "query": "appid", "secret_env": "EXAMPLE_API_KEY"}]
    assert "grants: 0 created, 1 updated, 0 unchanged" in load(write(project, text[:text.index("[[plugins.grant.")]))
    assert not HttpSecret.objects.exists()


def test_a_secrets_mistake_is_found_under_the_right_one_of_several_grants(project):
    Agent.objects.create(name="helper", provider="echo")
    text = """[[plugins]]
name = "echo"
wasm = "sandbox/plugins/echo.wasm"

[[plugins.grant]]
allowed_hosts = ["https://api.example.com"]

[[plugins.grant.http_secrets]]
host = "https://api.example.com"
query = "key"
secret_env = "EXAMPLE_API_KEY"

[[plugins.grant]]
agent = "helper"

[[plugins.grant.http_secrets]]
host = "https://api.example.com"
query = "key"
secret_env = "EXAMPLE_API_KEY"

[[plugins.grant.http_secrets]]
host = "https://api.example.com"
query = "key"
"""
    path = write(project, text)
    assert f"{path}:21: plugins[0].grant[1].http_secrets[1]: missing 'secret_env'" in refused(path)
