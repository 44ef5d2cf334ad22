"""A remote MCP server whose tools agents may be offered, as `<server>.<tool>`."""

import asyncio
import os
import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.netcheck import HostRefused, split_url

from .endpoint import Endpoint, RemoteError

NAME = re.compile(r"^[a-z0-9_-]+$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024


class McpServer(models.Model):
    name = models.CharField(
        max_length=64, unique=True,
        help_text="Lower-case letters, digits, - and _. Its tools are offered as name.tool; agents list the "
        "name in their tools like a plugin's.",
    )
    url = models.CharField(
        "URL", max_length=500,
        help_text="The server's Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp. No credentials in "
        "it: give them as headers from environment variables.",
    )
    headers_env = models.JSONField(
        "Headers from environment variables", default=dict, blank=True,
        help_text='Request headers, each read from an environment variable at call time: '
        '{"Authorization": "GITHUB_MCP_AUTH"} (the variable holds "Bearer …"). Only the names are stored.',
    )
    allowed_tools = models.JSONField(
        default=list, blank=True,
        help_text='The server\'s tools agents may be offered, e.g. ["search", "get_issue"]; ["*"] for every one. '
        "Empty: none.",
    )
    allow_private_hosts = models.JSONField(
        default=list, blank=True,
        help_text='Loopback or private hosts, addresses or networks the URL may reach, e.g. ["127.0.0.1"] for a '
        "server on this machine. Empty: only public addresses.",
    )
    timeout_ms = models.PositiveIntegerField(
        "Timeout (ms)", default=DEFAULT_TIMEOUT_MS, validators=[MinValueValidator(1), MaxValueValidator(600_000)],
        help_text="Longest one call (connecting included) may take; then it is cut off with a timeout error.",
    )
    max_output_bytes = models.PositiveIntegerField(
        "Max output (bytes)", default=DEFAULT_MAX_OUTPUT_BYTES, validators=[MinValueValidator(1)],
        help_text="Largest tool output; more is an invalid_output error.",
    )
    enabled = models.BooleanField(default=True, help_text="Off: its tools are offered to no agent.")
    tools = models.JSONField(
        default=list, blank=True, editable=False,
        help_text="The tools the server listed when this row was last saved.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self):
        return self.name

    def endpoint(self) -> Endpoint:
        return Endpoint(
            name=self.name, url=self.url, headers_env=dict(self.headers_env),
            allow_private_hosts=tuple(self.allow_private_hosts), timeout_ms=self.timeout_ms,
            max_output_bytes=self.max_output_bytes,
        )

    def allows(self, tool: str) -> bool:
        return "*" in self.allowed_tools or tool in self.allowed_tools

    def clean(self):
        errors = {}
        if not NAME.match(self.name or ""):
            errors["name"] = "Use lower-case letters, digits, - and _ (agents name it in their tools)."
        else:
            from sandbox.models import Plugin

            if Plugin.objects.filter(name=self.name).exists():
                errors["name"] = f"A plugin is named {self.name!r} already: tools are named name.tool, so pick another."
        try:
            split_url(self.url)
            if "@" in self.url.partition("://")[2].split("/", 1)[0]:
                errors["url"] = "Put no credentials in the URL: give them as headers from environment variables."
        except HostRefused as e:
            errors["url"] = f"{e}, e.g. https://mcp.example.com/mcp."
        if not isinstance(self.headers_env, dict) or not all(
            isinstance(k, str) and HEADER_NAME.match(k) and isinstance(v, str) and ENV_NAME.match(v)
            for k, v in self.headers_env.items()
        ):
            errors["headers_env"] = 'Map header names to environment variable names: {"Authorization": "GITHUB_MCP_AUTH"}.'
        for field in ("allowed_tools", "allow_private_hosts"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                errors[field] = 'Give a list of names, e.g. ["search"].'
        if errors:
            raise ValidationError(errors)
        if self.enabled:
            self.discover_tools()

    def discover_tools(self, environ=None):
        """Ask the server for its tools and keep the list (what agents can be offered comes from it)."""
        from .client import list_remote_tools

        try:
            self.tools = asyncio.run(list_remote_tools(self.endpoint(), os.environ if environ is None else environ))
        except RemoteError as e:
            raise ValidationError(f"Listing the tools of {self.url} failed: {e.message}") from None
