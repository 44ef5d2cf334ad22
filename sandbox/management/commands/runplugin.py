import json
import statistics
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from common.commands import CommandWithExample
from sandbox.abi import PLAIN, ToolDef, decode_result, encode_call
from sandbox.discovery import discover
from sandbox.errors import SandboxError
from sandbox.host import Host, PluginSpec
from sandbox.manifest import DENY_ALL, Grant, PathGrant, effective_grant, narrowing_violations
from sandbox.netrules import HostRule

EXAMPLES = """
examples:
  manage.py runplugin calc --describe
  manage.py runplugin calc --tool calc --args '{"expr": "6*7"}'
  manage.py runplugin sandbox/plugins/http_get.wasm --tool fetch --args '{"url": "http://127.0.0.1:8000/"}' \\
      --allow-host 127.0.0.1
  manage.py runplugin sandbox/plugins/echo.wasm echo --input 'hello' --repeat 100
  manage.py runplugin path/to/count_vowels.wasm count_vowels --input "Hello World"
  manage.py runplugin sandbox/plugins/read_file.wasm --wasi --allow-path /srv/docs:/docs:ro \\
      --tool read_file --args '{"path": "/docs/README"}'

A registered plugin runs under its stored grant (the default one, or --agent's); the grant flags may
only narrow it unless --unsafe-override is given. A .wasm path runs under the flags alone: nothing is
granted that is not asked for. Output goes to stdout (pretty-printed when it is JSON); timings go to
stderr. Exit status: 0 ok, 1 the plugin failed (the error kind and message are printed), 2 usage error.
"""


class Command(CommandWithExample):
    help = "Run a plugin function or tool in the sandbox, for testing tools by hand." + EXAMPLES

    def add_arguments(self, parser):
        parser.add_argument("target", metavar="NAME_OR_PATH", help="A registered plugin's name, or the path of a .wasm file.")
        parser.add_argument("function", metavar="FUNCTION", nargs="?", help="Export to call with the raw --input.")
        parser.add_argument(
            "--input", default="", help="Input for FUNCTION: the text itself, @FILE to read a file, or - to read stdin."
        )
        parser.add_argument("--tool", help="Call this tool through the plugin's ABI instead of a raw export.")
        parser.add_argument("--args", dest="tool_args", default="{}", help="The tool's arguments as a JSON object (with --tool).")
        parser.add_argument("--describe", action="store_true", help="Run tool discovery and print the ABI and tools.")
        parser.add_argument("--agent", help="Use this agent's grant for a registered plugin (default: the plugin's default grant).")
        parser.add_argument(
            "--allow-host",
            action="append",
            default=[],
            metavar="HOST[:PORT]",
            help="Allow HTTP to HOST: https and http on their default ports, or on PORT; also scheme://HOST[:PORT] "
            "or *.example.com (repeatable).",
        )
        parser.add_argument(
            "--allow-path",
            action="append",
            default=[],
            metavar="HOST[:GUEST][:ro]",
            help="Give WASI access to a host directory, seen as GUEST inside, read-only with :ro (repeatable).",
        )
        parser.add_argument("--timeout-ms", type=int, help="Stop the call after this many milliseconds (default 5000).")
        parser.add_argument("--memory-mb", type=int, help="Memory limit in MiB (default 16).")
        parser.add_argument("--wasi", action="store_true", help="Link WASI (needed for --allow-path on a .wasm path).")
        parser.add_argument("--config", action="append", default=[], metavar="K=V", help="Set a plugin config value (repeatable).")
        parser.add_argument("--repeat", type=int, default=1, metavar="N", help="Call N times and print min/median/max timings.")
        parser.add_argument(
            "--unsafe-override", action="store_true", help="Let the flags widen a registered plugin's stored grant."
        )

    def handle(self, *args, **options):
        if sum(bool(x) for x in (options["function"], options["tool"], options["describe"])) != 1:
            raise CommandError("give exactly one of FUNCTION, --tool NAME or --describe", returncode=2)
        for flag in ("repeat", "timeout_ms", "memory_mb"):
            # 0 would otherwise read as "not given" and fall back to the stored grant without a word.
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least 1", returncode=2)
        config = self._config(options["config"])
        self.declared_tools: list[dict] = []
        spec, grant, tools = self._target(options, config)
        host = Host(max_workers=1, ca_bundle=settings.SANDBOX_HTTP_CA_BUNDLE)
        try:
            if options["describe"]:
                # A registered plain plugin has no describe export: its declared tools say what it offers.
                abi, found = discover(host, spec, self.declared_tools)
                self._print_output(json.dumps({"abi": abi, "tools": [t.as_json() for t in found]}).encode())
                return
            if options["tool"]:
                abi, tool = self._tool(host, spec, tools, options["tool"])
                try:
                    arguments = json.loads(options["tool_args"])
                except json.JSONDecodeError as exc:
                    raise CommandError(f"--args is not JSON: {exc}", returncode=2) from None
                if not isinstance(arguments, dict):
                    raise CommandError("--args must be a JSON object", returncode=2)
                try:
                    function, data = encode_call(abi, tool, arguments)
                except ValueError as exc:
                    raise CommandError(str(exc), returncode=2) from None
            else:
                abi, function, data = None, options["function"], self._input(options["input"])
            output = self._run(host, spec, function, data, grant, options["repeat"])
            if abi is None:
                self._print_output(output)
                return
            content, is_error = decode_result(abi, output)
            self._print_output(content.encode())
            if is_error:
                self.stderr.write(f"tool error: {options['tool']} reported an error")
                sys.exit(1)
        except SandboxError as exc:
            self.stderr.write(f"error: {exc.kind}: {exc.message}")
            sys.exit(1)
        finally:
            host.shutdown()

    def _config(self, pairs) -> dict:
        config = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"--config {pair!r}: give KEY=VALUE", returncode=2)
            config[key] = value
        return config

    def _flag_grant(self, options, base: Grant) -> Grant:
        for host in options["allow_host"]:
            try:
                HostRule.parse(host)
            except ValueError as exc:
                raise CommandError(f"--allow-host {exc}", returncode=2) from None
        try:
            # Resolved here, so the directory checked against the stored grant is the one mounted.
            paths = tuple(PathGrant.parse(p).resolved() for p in options["allow_path"])
        except ValueError as exc:
            raise CommandError(f"--allow-path {exc}", returncode=2) from None
        return Grant(
            allowed_hosts=tuple(options["allow_host"]) if options["allow_host"] else base.allowed_hosts,
            allowed_paths=paths if options["allow_path"] else base.allowed_paths,
            memory_mb=options["memory_mb"] or base.memory_mb,
            timeout_ms=options["timeout_ms"] or base.timeout_ms,
            max_http_response_bytes=base.max_http_response_bytes,
            max_output_bytes=base.max_output_bytes,
            max_concurrency=base.max_concurrency,
            config=base.config,
            secret_env=base.secret_env,
            http_secrets=base.http_secrets,
            http_requests_per_call=base.http_requests_per_call,
            http_requests_per_minute=base.http_requests_per_minute,
        )

    def _target(self, options, config) -> tuple[PluginSpec, Grant, list[dict] | None]:
        target = options["target"]
        path = Path(target)
        if target.endswith(".wasm") or path.is_file():
            if not path.is_file():
                raise CommandError(f"no .wasm file at {target}", returncode=2)
            if options["agent"] or options["unsafe_override"]:
                raise CommandError("--agent and --unsafe-override apply to registered plugins only", returncode=2)
            spec = PluginSpec(name=path.stem, wasi=options["wasi"], config=config, wasm_path=str(path))
            return spec, self._flag_grant(options, DENY_ALL), None
        return self._registered(target, options, config)

    def _registered(self, name, options, config):
        from sandbox.models import Plugin

        plugin = Plugin.objects.filter(name=name).first()
        if plugin is None:
            known = ", ".join(Plugin.objects.values_list("name", flat=True)) or "none registered"
            raise CommandError(f"no plugin named {name!r} and no file at that path (plugins: {known})", returncode=2)
        if not plugin.enabled:
            self.stderr.write(f"note: plugin {name} is disabled; agents cannot use it")
        grants = plugin.grants.select_related("agent").prefetch_related("http_secrets")
        agent = options["agent"]
        if agent and not any(g.agent_id is not None and g.agent.name == agent for g in grants):
            self.stderr.write(f"note: {name} has no grant for an agent named {agent!r}; using its default grant")
        stored = effective_grant(grants, agent)
        grant = self._flag_grant(options, stored)
        problems = narrowing_violations(stored, grant)
        if problems and not options["unsafe_override"]:
            raise CommandError(
                "the flags widen the stored grant: " + "; ".join(problems) + " (add --unsafe-override to run anyway)",
                returncode=2,
            )
        for problem in problems:
            self.stderr.write(f"warning: --unsafe-override: {problem}")
        self.declared_tools = plugin.declared_tools
        base = plugin.spec()
        spec = PluginSpec(
            name=base.name,
            sha256=base.sha256,
            wasi=base.wasi or options["wasi"],
            config={**base.config, **config},
            wasm_path=base.wasm_path,
        )
        return spec, grant, [{"abi": plugin.abi, **t} for t in plugin.tools]

    def _tool(self, host, spec, stored_tools, name) -> tuple[str, ToolDef]:
        if stored_tools is not None:
            for tool in stored_tools:
                if tool["name"] == name:
                    return tool["abi"], ToolDef.from_json(tool)
            offered = ", ".join(t["name"] for t in stored_tools) or "none"
            raise CommandError(f"{spec.name} has no tool {name!r} (it has: {offered})", returncode=2)
        try:
            abi, tools = discover(host, spec, [])
        except SandboxError as exc:
            if exc.kind != "not_found":
                raise
            # A plain plugin given as a path: the tool is the export of that name, taking the arguments as JSON.
            return PLAIN, ToolDef(name, "")
        for tool in tools:
            if tool.name == name:
                return abi, tool
        raise CommandError(f"{spec.name} has no tool {name!r} (it has: {', '.join(t.name for t in tools)})", returncode=2)

    def _input(self, value: str) -> bytes:
        if value == "-":
            return sys.stdin.buffer.read()
        if value.startswith("@"):
            try:
                return Path(value[1:]).read_bytes()
            except OSError as exc:
                raise CommandError(f"--input {value}: {exc.strerror}", returncode=2) from None
        return value.encode()

    def _run(self, host, spec, function, data, grant, repeat) -> bytes:
        timings = []
        output = b""
        for _ in range(repeat):
            try:
                result = host.run(spec, function, data, grant)
            except SandboxError as exc:
                self._print_http(exc.http)
                raise
            timings.append(result)
            output = result.output
        first = timings[0]
        self._print_http(first.http)
        if repeat == 1:
            self.stderr.write(
                f"compile {first.compile_ms:.2f} ms, instantiate {first.instantiate_ms:.2f} ms, call {first.call_ms:.2f} ms"
            )
        else:
            def summary(values):
                return f"min {min(values):.3f} / median {statistics.median(values):.3f} / max {max(values):.3f} ms"

            self.stderr.write(f"compile {first.compile_ms:.2f} ms (once), {repeat} calls:")
            self.stderr.write(f"  instantiate {summary([t.instantiate_ms for t in timings])}")
            self.stderr.write(f"  call        {summary([t.call_ms for t in timings])}")
        return output

    def _print_http(self, records):
        """One line per HTTP request of the (first) call: what it asked for and what became of it."""
        for r in records:
            what = f"refused: {r['refused']}" if r.get("refused") else (
                f"failed: {r['error']}" if r.get("error") else f"{r['status']}, {r['bytes']} bytes")
            hop = " (redirect)" if r.get("redirect") else ""
            self.stderr.write(f"http {r['method']} {r['host']}{r['path']}{hop}: {what}, {r['duration_ms']:.2f} ms")

    def _print_output(self, output: bytes):
        try:
            text = output.decode()
        except UnicodeDecodeError:
            sys.stdout.buffer.write(output)
            sys.stdout.buffer.flush()
            return
        try:
            self.stdout.write(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except json.JSONDecodeError:
            self.stdout.write(text)
