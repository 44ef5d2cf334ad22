import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.validators import env_var_name

TOOL_PATTERN = re.compile(r"^(\*|[a-z0-9_-]+(\.([A-Za-z0-9_-]+|\*))?)$")


class Agent(models.Model):
    class Provider(models.TextChoices):
        ANTHROPIC = "anthropic", "Anthropic Messages API"
        OPENAI = "openai", "OpenAI Chat Completions (or a compatible server)"
        ECHO = "echo", "Echo (offline, for demos and tests)"

    class BusyPolicy(models.TextChoices):
        QUEUE = "queue", "Queue the new message until the running one finishes"
        REJECT = "reject", "Reject the new message with a session-busy error"

    name = models.SlugField(unique=True, help_text="Unique name used by bindings, clients and the config file.")
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.ECHO)
    model = models.CharField(
        max_length=128, blank=True, help_text="Model id sent to the provider, e.g. claude-sonnet-4-5 or gpt-4o."
    )
    base_url = models.URLField(
        "Base URL",
        blank=True,
        help_text="Provider API base URL. Empty: ANTHROPIC_BASE_URL / OPENAI_BASE_URL. "
        "Point an openai agent at Ollama, vLLM, llama.cpp or LM Studio here.",
    )
    api_key_env = models.CharField(
        "API key env var",
        max_length=128,
        blank=True,
        validators=[env_var_name],
        help_text="Name of the environment variable that holds the API key (never the key itself). "
        "Empty: ANTHROPIC_API_KEY / OPENAI_API_KEY.",
    )
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Sampling temperature, 0 to 2. Empty: the provider's default.",
    )
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    max_tool_rounds = models.PositiveSmallIntegerField(
        default=8, help_text="How many LLM turns with tool calls a run may take before it stops."
    )
    request_timeout = models.FloatField(
        "Request timeout (s)",
        default=60.0, validators=[MinValueValidator(0.1)], help_text="Seconds to wait for each LLM request."
    )
    context_messages = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)], help_text="How many past messages are sent to the LLM."
    )
    tools = models.JSONField(
        default=list,
        blank=True,
        help_text='Tool allowlist: a list of patterns such as "calc" (every tool of a plugin), '
        '"http_get.fetch" (one tool) or "*" (everything). Empty: no tools.',
    )
    busy_policy = models.CharField(
        max_length=8,
        choices=BusyPolicy.choices,
        default=BusyPolicy.QUEUE,
        help_text="What happens to a message for a session that already has a run.",
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if not isinstance(self.tools, list) or not all(isinstance(p, str) for p in self.tools):
            raise ValidationError({"tools": 'Give a list of strings, e.g. ["calc", "http_get.fetch"].'})
        bad = [p for p in self.tools if not TOOL_PATTERN.match(p)]
        if bad:
            raise ValidationError(
                {"tools": f"Not a tool pattern: {', '.join(bad)}. Use plugin, plugin.tool, plugin.* or *."}
            )

    # What a run needs of its agent, carried in the run's payload: the worker does not read the agents
    # table again, and a run keeps the configuration it was accepted with.
    SNAPSHOT_FIELDS = ("name", "provider", "model", "base_url", "api_key_env", "system_prompt", "temperature",
                       "max_tokens", "max_tool_rounds", "request_timeout", "context_messages", "tools", "busy_policy")

    def snapshot(self) -> dict:
        return {f: getattr(self, f) for f in self.SNAPSHOT_FIELDS}

    @classmethod
    def from_snapshot(cls, snapshot: dict) -> "Agent":
        """An unsaved Agent as it was when the run was accepted."""
        return cls(**snapshot)


class Session(models.Model):
    """Conversations live in the session store (SurrealDB), not in this database: this model has no
    table and holds only the permissions that give staff users their rights over sessions, in the
    session browser and over the gateway (docs/protocol.md, "Staff users"):

    - add session: start conversations (the gateway's `chat` scope);
    - view session: read every session (`sessions:read`);
    - change or delete session: reset and delete sessions (`sessions:write`).
    """

    class Meta:
        managed = False
        default_permissions = ("add", "view", "change", "delete")
