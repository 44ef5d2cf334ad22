"""Config as code: agents, plugins with their grants, bindings, channels and remote MCP servers in one
TOML file.

`read` parses and checks the file's shape (no database); `apply` creates or updates rows in one
transaction, running every model's own validation, and refuses the whole file if anything is
wrong; `collect` and `write` produce the same format from the database. docs/config.md describes
the format for operators.
"""

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction

from agents.models import Agent
from common.routefields import MATCH_FIELDS
from mcp_remote.models import McpServer
from routing.models import Binding
from sandbox.models import CapabilityGrant, HttpSecret, Plugin
from webhooks.models import ChannelEndpoint

from .tomlwrite import dumps

SECTIONS = ("agents", "plugins", "bindings", "channels", "mcp_servers")
AGENT_KEYS = (
    "name", "provider", "model", "base_url", "api_key_env", "system_prompt", "temperature", "max_tokens",
    "max_tool_rounds", "request_timeout", "context_messages", "tools", "busy_policy", "enabled",
)
PLUGIN_KEYS = ("name", "version", "description", "wasm", "sha256", "wasi", "config", "declared_tools", "enabled")
GRANT_KEYS = (
    "agent", "allowed_hosts", "allowed_paths", "memory_mb", "timeout_ms", "max_http_response_bytes",
    "max_output_bytes", "max_concurrency", "config", "secret_env", "http_requests_per_call", "http_requests_per_minute",
)
# A grant's `[[plugins.grant.http_secrets]]` tables, each an HttpSecret row.
HTTP_SECRET_KEYS = ("host", "header", "query", "format", "secret_env")
BINDING_KEYS = ("agent", *MATCH_FIELDS, "note", "enabled")
CHANNEL_KEYS = (
    "name", "adapter", "auth", "secret_env", "account", "api_base_url", "token_env", "max_body_bytes",
    "sender_policy", "allowed_senders", "enabled",
)
MCP_SERVER_KEYS = (
    "name", "url", "headers_env", "allowed_tools", "allow_private_hosts", "timeout_ms", "max_output_bytes", "enabled",
)
# Model fields whose errors belong to a differently named key in the file.
FILE_KEY = {"wasm_path": "wasm", "wasm_file": "wasm"}

HEADER = (
    "# exoclaw configuration, written by `python manage.py dumpconfig`.\n"
    "# Load it with `python manage.py loadconfig FILE`; docs/config.md describes every key.\n"
)


class ConfigError(Exception):
    """The file is refused; `problems` holds one line per mistake, each naming where it is."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Config:
    path: Path
    data: dict
    lines: "Lines"

    def where(self, *loc) -> str:
        """`file:line: agents[2].provider` for a location like ("agents", 2, "provider")."""
        line = self.lines.find(*loc)
        return f"{self.path}:{line}: {dotted(loc)}" if line else f"{self.path}: {dotted(loc)}"


def _zero_counts() -> dict:
    kinds = ("agents", "plugins", "grants", "bindings", "channels", "mcp_servers")
    return {kind: {"created": 0, "updated": 0, "unchanged": 0} for kind in kinds}


@dataclass
class Summary:
    counts: dict = field(default_factory=_zero_counts)

    def add(self, kind: str, outcome: str):
        self.counts[kind][outcome] += 1

    def lines(self, dry_run: bool = False) -> list[str]:
        """`agents: 1 created, 0 updated, 2 unchanged`; a dry run's `agents: would create 1, would update 0, 2 unchanged`."""
        if dry_run:
            return [
                f"{kind}: would create {c['created']}, would update {c['updated']}, {c['unchanged']} unchanged"
                for kind, c in self.counts.items()
            ]
        return [
            f"{kind}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
            for kind, counts in self.counts.items()
        ]


def dotted(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# Reading and shape checks: no database.


def read(path: Path) -> Config:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = re.search(r"at line (\d+)", str(e))
        raise ConfigError([f"{path}:{line.group(1) if line else '?'}: not valid TOML: {e}"]) from None
    config = Config(path, data, Lines(text))
    problems = check_shape(config)
    if problems:
        raise ConfigError(problems)
    return config


def _python_type(model, name):
    f = model._meta.get_field(name)
    if isinstance(f, models.BooleanField):
        return (bool,)
    if isinstance(f, models.FloatField):
        return (int, float)
    if isinstance(f, models.IntegerField):
        return (int,)
    if isinstance(f, models.JSONField):
        return (type(f.get_default()),)
    return (str,)


TYPES = {
    "agents": {k: _python_type(Agent, k) for k in AGENT_KEYS},
    "plugins": {k: _python_type(Plugin, k) for k in PLUGIN_KEYS if k != "wasm"}
    | {"wasm": (str,), "grant": (dict, list)},
    "grant": {k: _python_type(CapabilityGrant, k) for k in GRANT_KEYS if k != "agent"}
    | {"agent": (str,), "http_secrets": (list,)},
    "http_secrets": {k: _python_type(HttpSecret, k) for k in HTTP_SECRET_KEYS},
    "bindings": {k: _python_type(Binding, k) for k in BINDING_KEYS if k != "agent"} | {"agent": (str,)},
    "channels": {k: _python_type(ChannelEndpoint, k) for k in CHANNEL_KEYS if k != "adapter"} | {"adapter": (str,)},
    "mcp_servers": {k: _python_type(McpServer, k) for k in MCP_SERVER_KEYS},
}
REQUIRED = {
    "agents": ("name",), "plugins": ("name", "wasm"), "grant": (), "http_secrets": ("host", "secret_env"),
    "bindings": ("agent",),
    "channels": ("name", "adapter", "secret_env"), "mcp_servers": ("name", "url"),
}
TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", list: "an array",
              dict: "a table"}


def check_shape(config: Config) -> list[str]:
    problems = []
    for name, value in config.data.items():
        if name not in SECTIONS:
            problems.append(f"{config.where(name)}: unknown table; the file holds {', '.join(SECTIONS)}")
        elif not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            problems.append(f"{config.where(name)}: write it as an array of tables, [[{name}]]")
        else:
            for i, table in enumerate(value):
                problems += _check_table(config, name, table, (name, i))
                grant = table.get("grant") if name == "plugins" else None
                if isinstance(grant, dict):
                    problems += _check_grant(config, grant, (name, i, "grant"))
                elif isinstance(grant, list):
                    for j, g in enumerate(grant):
                        if isinstance(g, dict):
                            problems += _check_grant(config, g, (name, i, "grant", j))
                        else:
                            problems.append(f"{config.where(name, i, 'grant', j)}: must be a table")
    return problems


def _check_grant(config: Config, grant: dict, loc: tuple) -> list[str]:
    problems = _check_table(config, "grant", grant, loc)
    for k, secret in enumerate(grant.get("http_secrets") if isinstance(grant.get("http_secrets"), list) else []):
        if isinstance(secret, dict):
            problems += _check_table(config, "http_secrets", secret, (*loc, "http_secrets", k))
        else:
            problems.append(f"{config.where(*loc, 'http_secrets', k)}: must be a table")
    return problems


def _check_table(config: Config, kind: str, table: dict, loc: tuple) -> list[str]:
    problems = []
    types = TYPES[kind]
    for key in REQUIRED[kind]:
        if key not in table:
            problems.append(f"{config.where(*loc)}: missing {key!r}")
    for key, value in table.items():
        if key not in types:
            problems.append(f"{config.where(*loc, key)}: unknown key; known keys are {', '.join(types)}")
        elif not isinstance(value, types[key]) or (isinstance(value, bool) and bool not in types[key]):
            problems.append(f"{config.where(*loc, key)}: must be {' or '.join(TYPE_NAMES[t] for t in types[key])}")
    return problems


class Lines:
    """Finds the line of a table or key in the file, for error messages. Best effort: tables written
    inline (`agents = [{...}]`) have no line of their own, and then only the path is given."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str):
        self.text_lines = text.splitlines()
        self.tables: dict[tuple, tuple[int, int]] = {}
        counts: dict[tuple, int] = {}
        latest: dict[str, tuple] = {}
        current: tuple | None = None
        start = 0
        in_multiline = False
        for n, line in enumerate(self.text_lines, start=1):
            if (line.count('"""') + line.count("'''")) % 2:
                in_multiline = not in_multiline
                continue
            m = None if in_multiline else self.HEADER.match(line)
            if not m:
                continue
            if current is not None:
                self.tables[current] = (start, n - 1)
            current, start = self._table_key(m.group(1) == "[[", m.group(2).split("."), counts, latest), n
        if current is not None:
            self.tables[current] = (start, len(self.text_lines))

    @staticmethod
    def _table_key(is_array: bool, parts: list[str], counts: dict, latest: dict) -> tuple:
        """A header's location: `[[plugins]]` is ("plugins", i); a header inside it belongs to the latest
        table of its parent, so a nested array counts afresh inside each: `[[plugins.grant.http_secrets]]`
        is ("plugins", i, "grant", "http_secrets", k), or ("plugins", i, "grant", j, "http_secrets", k)
        under `[[plugins.grant]]`."""
        *outer, name = parts
        parent = ()
        for cut in range(len(outer), 0, -1):
            if ".".join(outer[:cut]) in latest:
                parent = (*latest[".".join(outer[:cut])], *outer[cut:])
                break
        key = (*(parent or outer), name)
        if is_array:
            counts[key] = counts.get(key, -1) + 1
            key = (*key, counts[key])
        elif not outer:
            key = (name, 0)
        path = ".".join(parts)
        # A new table starts afresh: the tables inside the one it follows are not its.
        for inner in [p for p in latest if p.startswith(path + ".")]:
            del latest[inner]
        latest[path] = key
        return key

    def find(self, *loc) -> int | None:
        if len(loc) == 1:
            loc = (loc[0], 0)
        for cut in (len(loc), len(loc) - 1):
            span = self.tables.get(tuple(loc[:cut]))
            if span is None:
                continue
            if cut == len(loc):
                return span[0]
            key = re.compile(rf"""^\s*["']?{re.escape(str(loc[-1]))}["']?\s*=""")
            for n in range(span[0], span[1] + 1):
                if key.match(self.text_lines[n - 1]):
                    return n
            return span[0]
        return None


# Applying: one transaction, every row validated by its model.


def apply(config: Config, dry_run: bool = False) -> Summary:
    """Create or update every row the file describes; raise ConfigError and change nothing if any row
    is invalid. Rows the file does not mention are left alone."""
    summary = Summary()
    problems: list[str] = []
    with transaction.atomic():
        sections = {s: config.data.get(s, []) for s in SECTIONS}
        for kind, key_of in (("agents", lambda t: t["name"]), ("plugins", lambda t: t["name"]),
                             ("bindings", lambda t: tuple(t.get(f, "") for f in MATCH_FIELDS)),
                             ("channels", lambda t: t["name"]), ("mcp_servers", lambda t: t["name"])):
            problems += _duplicates(config, kind, sections[kind], key_of)
        for i, table in enumerate(sections["agents"]):
            _apply_agent(config, i, table, summary, problems)
        for i, table in enumerate(sections["plugins"]):
            _apply_plugin(config, i, table, summary, problems)
        for i, table in enumerate(sections["bindings"]):
            _apply_binding(config, i, table, summary, problems)
        for i, table in enumerate(sections["channels"]):
            _apply_channel(config, i, table, summary, problems)
        for i, table in enumerate(sections["mcp_servers"]):
            _apply_mcp_server(config, i, table, summary, problems)
        if problems:
            raise ConfigError(problems)
        if dry_run:
            transaction.set_rollback(True)
    return summary


def _duplicates(config, kind, tables, key_of) -> list[str]:
    seen, problems = {}, []
    for i, table in enumerate(tables):
        k = key_of(table)
        if k in seen:
            what = "name" if kind != "bindings" else "match (channel, account, peer, guild, team)"
            problems.append(f"{config.where(kind, i)}: same {what} as {kind}[{seen[k]}]")
        seen.setdefault(k, i)
    return problems


def _defaults(model, keys) -> dict:
    return {k: model._meta.get_field(k).get_default() for k in keys}


def _snapshot(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields
            if f.name not in ("created", "updated")}


def _valid(config, obj, loc, problems, exclude=None) -> bool:
    """Run `obj`'s own validation; report its problems at `loc`."""
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as e:
        for name, messages in e.message_dict.items():
            where = config.where(*loc) if name == NON_FIELD_ERRORS else config.where(*loc, FILE_KEY.get(name, name))
            problems.extend(f"{where}: {m}" for m in messages)
        return False
    return True


def _save(config, obj, before, loc, kind, summary, problems, rows_changed=False) -> bool:
    """Validate `obj` and save it if it is new (`before` is None), differs from `before`, or rows of
    its own (`rows_changed`) do; report problems at `loc`. True if the row is usable."""
    if not _valid(config, obj, loc, problems):
        return False
    if before is None:
        obj.save()
        summary.add(kind, "created")
    elif _snapshot(obj) != before or rows_changed:
        obj.save()
        summary.add(kind, "updated")
    else:
        summary.add(kind, "unchanged")
    return True


def _existing(queryset, new):
    """The first row of `queryset` and its snapshot, or `new` and None."""
    obj = queryset.first()
    return (obj, _snapshot(obj)) if obj is not None else (new, None)


def _apply_agent(config, i, table, summary, problems):
    obj, before = _existing(Agent.objects.filter(name=table["name"]), Agent())
    for k, v in (_defaults(Agent, AGENT_KEYS) | table).items():
        setattr(obj, k, v)
    _save(config, obj, before, ("agents", i), "agents", summary, problems)


def _apply_plugin(config, i, table, summary, problems):
    obj, before = _existing(Plugin.objects.filter(name=table["name"]), Plugin())
    values = _defaults(Plugin, [k for k in PLUGIN_KEYS if k != "wasm"]) | table
    wasm = os.path.abspath(config.path.parent / values.pop("wasm"))
    grants = values.pop("grant", [])
    for k, v in values.items():
        setattr(obj, k, v)
    # An uploaded .wasm that the file names by its stored path stays an upload.
    if not (obj.wasm_file and os.path.abspath(obj.wasm_file.path) == wasm):
        obj.wasm_file, obj.wasm_path = "", wasm
    if not _save(config, obj, before, ("plugins", i), "plugins", summary, problems):
        return
    if isinstance(grants, dict):
        _apply_grant(config, ("plugins", i, "grant"), obj, grants, summary, problems)
    else:
        agents = [g.get("agent") for g in grants]
        for j, grant in enumerate(grants):
            if grant.get("agent") in agents[:j]:
                problems.append(f"{config.where('plugins', i, 'grant', j)}: a second grant for the same agent")
            else:
                _apply_grant(config, ("plugins", i, "grant", j), obj, grant, summary, problems)


def _agent_named(config, name, loc, problems):
    agent = Agent.objects.filter(name=name).first()
    if agent is None:
        problems.append(f"{config.where(*loc, 'agent')}: no agent named {name!r} (define it under [[agents]])")
    return agent


def _apply_grant(config, loc, plugin, table, summary, problems):
    agent = None
    if "agent" in table:
        agent = _agent_named(config, table["agent"], loc, problems)
        if agent is None:
            return
    obj, before = _existing(
        CapabilityGrant.objects.filter(plugin=plugin, agent=agent), CapabilityGrant(plugin=plugin, agent=agent)
    )
    values = {k: v for k, v in table.items() if k not in ("agent", "http_secrets")}
    for k, v in (_defaults(CapabilityGrant, GRANT_KEYS[1:]) | values).items():
        setattr(obj, k, v)
    # The file gives a grant's HTTP secrets whole: they replace the stored ones.
    secrets = [HttpSecret(**s) for s in table.get("http_secrets", [])]
    valid = [_valid(config, s, (*loc, "http_secrets", k), problems, exclude=["grant"]) for k, s in enumerate(secrets)]
    stored = [s.as_table() for s in obj.http_secrets.all()] if before is not None else []
    changed = [s.as_table() for s in secrets] != stored
    if _save(config, obj, before, loc, "grants", summary, problems, rows_changed=changed) and all(valid) and changed:
        obj.http_secrets.all().delete()
        for secret in secrets:
            secret.grant = obj
        HttpSecret.objects.bulk_create(secrets)


def _apply_binding(config, i, table, summary, problems):
    agent = _agent_named(config, table["agent"], ("bindings", i), problems)
    if agent is None:
        return
    match = {f: table.get(f, "") for f in MATCH_FIELDS}
    obj, before = _existing(Binding.objects.filter(**match).order_by("-enabled", "id"), Binding(**match))
    obj.agent = agent
    obj.note = table.get("note", "")
    obj.enabled = table.get("enabled", True)
    _save(config, obj, before, ("bindings", i), "bindings", summary, problems)


def _apply_channel(config, i, table, summary, problems):
    adapter = Plugin.objects.filter(name=table["adapter"]).first()
    if adapter is None:
        where = config.where("channels", i, "adapter")
        problems.append(f"{where}: no plugin named {table['adapter']!r} (define it under [[plugins]])")
        return
    obj, before = _existing(ChannelEndpoint.objects.filter(name=table["name"]), ChannelEndpoint())
    fields = [k for k in CHANNEL_KEYS if k != "adapter"]
    for k, v in (_defaults(ChannelEndpoint, fields) | {k: v for k, v in table.items() if k != "adapter"}).items():
        setattr(obj, k, v)
    obj.adapter = adapter
    _save(config, obj, before, ("channels", i), "channels", summary, problems)


def _apply_mcp_server(config, i, table, summary, problems):
    # Validating the row lists the server's tools (unless it is disabled): the file is refused if the
    # server cannot be reached.
    obj, before = _existing(McpServer.objects.filter(name=table["name"]), McpServer())
    for k, v in (_defaults(McpServer, MCP_SERVER_KEYS) | table).items():
        setattr(obj, k, v)
    _save(config, obj, before, ("mcp_servers", i), "mcp_servers", summary, problems)


# Writing: the database in the same format.


def collect(base_dir: Path | None = None) -> dict:
    """Every agent, plugin (with its grants) and binding as the file's tables. Keys whose value is the
    model's default are left out, as loading fills them in. Wasm paths inside `base_dir` are written
    relative to it."""
    agents = [_non_default(a, AGENT_KEYS, keep=("name", "provider")) for a in Agent.objects.order_by("name")]
    plugins = []
    for p in Plugin.objects.order_by("name").prefetch_related("grants__agent", "grants__http_secrets"):
        table = _non_default(p, [k for k in PLUGIN_KEYS if k != "wasm"], keep=("name", "sha256"))
        table = {"name": table.pop("name"), "wasm": _wasm_path(p, base_dir), **table}
        grants = [_grant_table(g) for g in sorted(p.grants.all(), key=lambda g: (g.agent is not None, str(g.agent)))]
        # A grant for every agent that holds only defaults grants what no grant does: nothing to write.
        grants = [g for g in grants if g]
        if grants:
            table["grant"] = grants[0] if len(grants) == 1 else grants
        plugins.append(table)
    bindings, seen = [], set()
    # An enabled binding first for each match: the file names a binding by its match alone.
    for b in Binding.objects.select_related("agent").order_by("-enabled", "id"):
        match = tuple(getattr(b, f) for f in MATCH_FIELDS)
        if match not in seen:
            seen.add(match)
            bindings.append(b)
    bindings.sort(key=lambda b: b.id)
    return {
        "agents": agents,
        "plugins": plugins,
        "bindings": [{"agent": b.agent.name} | _non_default(b, BINDING_KEYS[1:]) for b in bindings],
        "channels": [
            {"name": c.name, "adapter": c.adapter.name}
            | _non_default(c, list(CHANNEL_KEYS[2:]), keep=("secret_env",))
            for c in ChannelEndpoint.objects.select_related("adapter").order_by("name")
        ],
        "mcp_servers": [_non_default(m, MCP_SERVER_KEYS, keep=("name", "url")) for m in McpServer.objects.order_by("name")],
    }


def _non_default(obj, keys, keep=()) -> dict:
    defaults = _defaults(type(obj), keys)
    return {k: getattr(obj, k) for k in keys if k in keep or getattr(obj, k) != defaults[k]}


def _grant_table(g) -> dict:
    table = {"agent": g.agent.name} if g.agent else {}
    secrets = [s.as_table() for s in g.http_secrets.all()]
    return table | _non_default(g, GRANT_KEYS[1:]) | ({"http_secrets": secrets} if secrets else {})


def _wasm_path(plugin, base_dir) -> str:
    path = Path(os.path.abspath(plugin.wasm_file.path if plugin.wasm_file else plugin.wasm_path))
    if base_dir is not None and path.is_relative_to(os.path.abspath(base_dir)):
        return str(path.relative_to(os.path.abspath(base_dir)))
    return str(path)


def write(base_dir: Path | None = None) -> str:
    return dumps(collect(base_dir), subtables=("grant",), header=HEADER, nested=("http_secrets",))
