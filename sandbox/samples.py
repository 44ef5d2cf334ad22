"""The sample plugins shipped in sandbox/plugins/, registered with conservative default grants."""

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from .models import CapabilityGrant, Plugin

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"

SAMPLES = [
    {"name": "echo", "description": "Repeats text back (exoclaw ABI).", "wasi": False},
    {"name": "calc", "description": "Evaluates arithmetic expressions (exoclaw ABI).", "wasi": False},
    {
        "name": "http_get",
        "description": "Fetches a URL over HTTP (MCP-style ABI). Grant the hosts it may reach.",
        "wasi": False,
    },
    {
        "name": "read_file",
        "description": "Reads and writes files in granted directories through WASI (MCP-style ABI).",
        "wasi": True,
    },
    {
        "name": "count_vowels",
        "description": "A C port of the Extism project's count_vowels demo: a plain plugin with a declared tool.",
        "wasi": False,
        "declared_tools": [
            {
                "name": "count_vowels",
                "description": "Count the vowels in a text; returns {count, total, vowels} as JSON.",
                "input_schema": {
                    "type": "object",
                    "properties": {"text": {"type": "string", "description": "The text to count vowels in."}},
                    "required": ["text"],
                },
                "input_arg": "text",
            }
        ],
    },
]


def sample_files_dir() -> Path:
    """The directory read_file is granted (read-only) by default."""
    path = settings.VAR_DIR / "plugin-files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default_grant(name: str) -> dict:
    if name == "read_file":
        return {"allowed_paths": [{"host": str(sample_files_dir()), "guest": "/files", "read_only": True}]}
    return {}


@transaction.atomic
def register_samples(log: Callable[[str], object] = lambda message: None) -> list[Plugin]:
    """Create or update the sample plugins by name (idempotent). Existing grants are left as the operator set them."""
    plugins = []
    for sample in SAMPLES:
        wasm_path = str(PLUGIN_DIR / f"{sample['name']}.wasm")
        plugin = Plugin.objects.filter(name=sample["name"]).first()
        created = plugin is None
        plugin = plugin or Plugin(name=sample["name"])
        before = (plugin.wasm_path, plugin.sha256, plugin.wasi, plugin.declared_tools)
        plugin.description = sample["description"]
        plugin.wasm_path = wasm_path
        plugin.wasi = sample["wasi"]
        plugin.declared_tools = sample.get("declared_tools", [])
        plugin.sha256 = ""
        plugin.full_clean()
        if created or before != (plugin.wasm_path, plugin.sha256, plugin.wasi, plugin.declared_tools):
            plugin.save()
            log(f"{'registered' if created else 'updated'} plugin {plugin.name} ({plugin.abi}: "
                f"{', '.join(t['name'] for t in plugin.tools)})")
        if not plugin.grants.filter(agent__isnull=True).exists():
            grant = CapabilityGrant(plugin=plugin, **_default_grant(plugin.name))
            grant.full_clean()
            grant.save()
        plugins.append(plugin)
    return plugins
