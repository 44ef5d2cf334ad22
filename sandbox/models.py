import hashlib
import re
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from .manifest import (
    DEFAULT_HTTP_REQUESTS_PER_CALL,
    DEFAULT_HTTP_REQUESTS_PER_MINUTE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_HTTP_RESPONSE_BYTES,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_MS,
)
from .netrules import SECRET_FORMAT, HostRule, SecretRule

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Plugin(models.Model):
    class Abi(models.TextChoices):
        MCP = "mcp", "MCP-style describe/call"
        EXOCLAW = "exoclaw", "exoclaw describe/handle_tool_call"
        PLAIN = "plain", "Plain exports with operator-declared tools"
        CHANNEL_ADAPTER = "channel_adapter", "Channel adapter"

    name = models.SlugField(unique=True, help_text="Unique name; tools are called plugin.tool.")
    version = models.CharField(max_length=32, blank=True, default="0.1.0")
    description = models.TextField(blank=True)
    wasm_file = models.FileField(upload_to="plugins/", blank=True, help_text="Upload a .wasm file…")
    wasm_path = models.CharField(
        max_length=500, blank=True, help_text="…or give the path of a .wasm file on the server."
    )
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="Computed on save. If you fill it in, the .wasm must match it or the save fails.",
    )
    wasi = models.BooleanField(default=False, help_text="Link WASI (needed for file access through granted paths).")
    config = models.JSONField(default=dict, blank=True, help_text="Plugin config (Extism config), a JSON object.")
    abi = models.CharField(max_length=16, choices=Abi.choices, blank=True, help_text="Found by tool discovery.")
    declared_tools = models.JSONField(
        default=list,
        blank=True,
        help_text='For plain plugins without describe: [{"name": export, "description": "...", '
        '"input_schema": {...}, "input_arg": "text"}]. input_arg (optional) names a string argument '
        "passed to the export as raw input; without it the export gets the arguments as JSON. "
        "Ignored when the plugin exports describe.",
    )
    tools = models.JSONField(default=list, blank=True, editable=False, help_text="Discovered or declared tools.")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def read_wasm(self) -> bytes:
        if self.wasm_file:
            if not self.wasm_file._committed:
                # A fresh upload: read it without closing it, the save still needs it.
                upload = self.wasm_file.file
                upload.seek(0)
                data = upload.read()
                upload.seek(0)
                return data
            with self.wasm_file.open("rb") as f:
                return f.read()
        return Path(self.wasm_path).read_bytes()

    def spec(self, *, with_bytes: bool = False):
        """The host's view of this plugin; with_bytes for a plugin whose upload is not saved yet."""
        from .host import PluginSpec

        path = "" if with_bytes or not self.wasm_file else self.wasm_file.path
        return PluginSpec(
            name=self.name,
            sha256=self.sha256,
            wasi=self.wasi,
            config=dict(self.config),
            wasm_path=path or self.wasm_path,
            wasm=self.read_wasm() if with_bytes else None,
        )

    def clean(self):
        if bool(self.wasm_file) == bool(self.wasm_path):
            raise ValidationError("Give the .wasm either as an uploaded file or as a path, not both and not neither.")
        if self.wasm_path and not Path(self.wasm_path).is_file():
            raise ValidationError({"wasm_path": f"No file at {self.wasm_path}."})
        if not isinstance(self.config, dict):
            raise ValidationError({"config": "Give a JSON object."})
        actual = sha256_of(self.read_wasm())
        given = self.sha256.strip().lower()
        if given and given != actual:
            raise ValidationError(
                {"sha256": f"The .wasm's sha256 is {actual}, not {given}. Check that you uploaded the right file."}
            )
        self.sha256 = actual
        self.discover_tools()

    def discover_tools(self):
        """Run tool discovery (describe, or the declared tools) and store the ABI and tools it finds."""
        from .discovery import discover
        from .errors import SandboxError
        from .process_host import get_host

        try:
            abi, tools = discover(get_host(), self.spec(with_bytes=True), self.declared_tools)
        except SandboxError as exc:
            raise ValidationError(f"Tool discovery failed: {exc}") from None
        self.abi = abi
        self.tools = [t.as_json() for t in tools]


class CapabilityGrant(models.Model):
    plugin = models.ForeignKey(Plugin, on_delete=models.CASCADE, related_name="grants")
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="grants",
        help_text="Empty: the grant applies to every agent. Set: only to this agent (it then wins).",
    )
    allowed_hosts = models.JSONField(
        default=list,
        blank=True,
        help_text='What the plugin may reach over HTTP: "api.example.com" (https and http on their default ports), '
        '"api.example.com:8443", "https://api.example.com", "*.example.org", or {"host": "https://api.example.com", '
        '"methods": ["GET"], "path_prefix": "/v1/"}. Loopback and private addresses only when named exactly.',
    )
    allowed_paths = models.JSONField(
        default=list,
        blank=True,
        help_text='Directories the plugin may open (WASI): [{"host": "/srv/data", "guest": "/data", '
        '"read_only": true}].',
    )
    memory_mb = models.PositiveIntegerField(
        "Memory (MiB)",
        default=DEFAULT_MEMORY_MB,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Most memory one call's instance may grow to, in MiB; beyond it the call fails with out_of_memory.",
    )
    timeout_ms = models.PositiveIntegerField(
        "Timeout (ms)",
        default=DEFAULT_TIMEOUT_MS,
        validators=[MinValueValidator(1), MaxValueValidator(600_000)],
        help_text="Longest one call may run, in milliseconds; then it is stopped with a timeout error.",
    )
    max_http_response_bytes = models.PositiveIntegerField(
        "Max HTTP response (bytes)",
        default=DEFAULT_MAX_HTTP_RESPONSE_BYTES, help_text="Largest HTTP response body the plugin may receive."
    )
    max_output_bytes = models.PositiveIntegerField(
        "Max output (bytes)",
        default=DEFAULT_MAX_OUTPUT_BYTES,
        validators=[MinValueValidator(1)],
        help_text="Largest output a call may return; more is an invalid_output error.",
    )
    config = models.JSONField(default=dict, blank=True, help_text="Extra plugin config values (not secret).")
    secret_env = models.JSONField(
        default=dict,
        blank=True,
        help_text='Secret config values, read from the environment at call time: {"api_key": "WEATHER_API_KEY"}. '
        "Only variable names are stored; values are never shown.",
    )
    http_requests_per_call = models.PositiveIntegerField(
        "HTTP requests per call",
        default=DEFAULT_HTTP_REQUESTS_PER_CALL,
        help_text="Most HTTP requests one call may make (each redirect hop counts); 0: no limit.",
    )
    http_requests_per_minute = models.PositiveIntegerField(
        "HTTP requests per minute",
        default=DEFAULT_HTTP_REQUESTS_PER_MINUTE,
        help_text="Most HTTP requests the plugin may make in any minute, all its calls together; 0: no limit.",
    )
    max_concurrency = models.PositiveIntegerField(
        default=DEFAULT_MAX_CONCURRENCY, validators=[MinValueValidator(1)], help_text="Calls running at once."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plugin"],
                condition=models.Q(agent__isnull=True),
                name="one_default_grant_per_plugin",
                violation_error_message="This plugin already has a grant for every agent.",
            ),
            models.UniqueConstraint(
                fields=["plugin", "agent"],
                name="one_grant_per_plugin_and_agent",
                violation_error_message="This plugin already has a grant for this agent.",
            ),
        ]

    def __str__(self):
        return f"{self.plugin} for {self.agent or 'every agent'}"

    def clean(self):
        errors = {}
        if not isinstance(self.allowed_hosts, list):
            errors["allowed_hosts"] = 'Give a list, e.g. ["api.example.com", "localhost:8080", "*.example.org"].'
        else:
            problems = []
            for entry in self.allowed_hosts:
                try:
                    HostRule.parse(entry)
                except ValueError as exc:
                    problems.append(str(exc))
            if problems:
                errors["allowed_hosts"] = "; ".join(problems)
        if not isinstance(self.allowed_paths, list) or not all(_valid_path_grant(p) for p in self.allowed_paths):
            errors["allowed_paths"] = (
                'Give a list like [{"host": "/srv/data", "guest": "/data", "read_only": true}]; host and guest '
                "must be absolute paths."
            )
        else:
            missing = [p["host"] for p in self.allowed_paths if not Path(p["host"]).is_dir()]
            if missing:
                errors["allowed_paths"] = f"Not a directory on this server: {', '.join(missing)}."
        if not isinstance(self.config, dict):
            errors["config"] = "Give a JSON object."
        if not isinstance(self.secret_env, dict) or not all(
            isinstance(v, str) and ENV_NAME.match(v) for v in self.secret_env.values()
        ):
            errors["secret_env"] = 'Map config keys to environment variable names: {"api_key": "WEATHER_API_KEY"}.'
        if errors:
            raise ValidationError(errors)


class HttpSecret(models.Model):
    """A secret exoclaw adds to a grant's requests to one host, as a header or a query parameter; the
    plugin never sees it. Only the environment variable's name is stored."""

    grant = models.ForeignKey(CapabilityGrant, on_delete=models.CASCADE, related_name="http_secrets")
    host = models.CharField(
        max_length=300,
        help_text="The one host the secret belongs to, written like an allowed_hosts entry without a wildcard: "
        "https://api.example.com.",
    )
    header = models.CharField(max_length=100, blank=True, help_text="Send the secret in this header (Authorization)…")
    query = models.CharField(
        max_length=100, blank=True, help_text="…or as this query parameter (appid). Exactly one of the two."
    )
    format = models.CharField(
        max_length=500,
        default=SECRET_FORMAT,
        help_text="The value sent, with {secret} where the secret goes: Bearer {secret}.",
    )
    secret_env = models.CharField(
        "environment variable",
        max_length=128,
        help_text="Name of the environment variable holding the secret, never the secret itself.",
    )

    class Meta:
        verbose_name = "HTTP secret"
        ordering = ["id"]

    def __str__(self):
        return f"{self.secret_env} for {self.host}"

    def as_table(self) -> dict:
        """The secret as SecretRule.parse reads it and the config file writes it: header or query, and
        format only when it is not the default."""
        table = {"host": self.host}
        if self.header:
            table["header"] = self.header
        if self.query:
            table["query"] = self.query
        if self.format != SECRET_FORMAT:
            table["format"] = self.format
        return table | {"secret_env": self.secret_env}

    def clean(self):
        # SecretRule is what the sandbox applies, so it alone decides what is valid.
        try:
            SecretRule.parse(self.as_table())
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _valid_path_grant(p) -> bool:
    return (
        isinstance(p, dict)
        and isinstance(p.get("host"), str)
        and p["host"].startswith("/")
        and isinstance(p.get("guest", p.get("host")), str)
        and p.get("guest", p["host"]).startswith("/")
        and isinstance(p.get("read_only", False), bool)
        and set(p) <= {"host", "guest", "read_only"}
    )
