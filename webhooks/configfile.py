"""`[[channels]]` in the config file: channel endpoints, keyed by name, their adapter by plugin name.

The config module (`exoclaw/configfile.py`) owns reading, errors and the transaction; these
functions hold what is particular to channels, so it calls them like its own sections.
"""

from sandbox.models import Plugin

from .models import ChannelEndpoint

CHANNEL_KEYS = (
    "name", "adapter", "auth", "secret_env", "account", "api_base_url", "token_env", "max_body_bytes", "enabled",
)  # fmt: skip
REQUIRED = ("name", "adapter", "secret_env")
TYPES = {k: (bool,) if k == "enabled" else (int,) if k == "max_body_bytes" else (str,) for k in CHANNEL_KEYS}
_FIELDS = tuple(k for k in CHANNEL_KEYS if k != "adapter")


def build_channel(table: dict, where_adapter: str, problems: list[str]) -> ChannelEndpoint | None:
    """The endpoint `table` describes, updated in memory (not saved); None if its adapter is unknown."""
    adapter = Plugin.objects.filter(name=table["adapter"]).first()
    if adapter is None:
        problems.append(f"{where_adapter}: no plugin named {table['adapter']!r} (define it under [[plugins]])")
        return None
    obj = ChannelEndpoint.objects.filter(name=table["name"]).first() or ChannelEndpoint()
    defaults = {k: ChannelEndpoint._meta.get_field(k).get_default() for k in _FIELDS}
    for k, v in (defaults | {k: v for k, v in table.items() if k != "adapter"}).items():
        setattr(obj, k, v)
    obj.adapter = adapter
    return obj


def collect_channels() -> list[dict]:
    """Every endpoint as a `[[channels]]` table, leaving out keys at their default."""
    tables = []
    for c in ChannelEndpoint.objects.select_related("adapter").order_by("name"):
        table = {"name": c.name, "adapter": c.adapter.name, "secret_env": c.secret_env}
        for k in _FIELDS:
            if k not in table and getattr(c, k) != ChannelEndpoint._meta.get_field(k).get_default():
                table[k] = getattr(c, k)
        tables.append(table)
    return tables
