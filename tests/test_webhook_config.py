"""`[[channels]]` in loadconfig / dumpconfig."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from webhooks.models import ChannelEndpoint

pytestmark = pytest.mark.django_db

PLUGINS = Path(__file__).resolve().parent.parent / "sandbox" / "plugins"

CONFIG = f"""
[[plugins]]
name = "telegram"
wasm = "{PLUGINS / 'telegram.wasm'}"

[[plugins]]
name = "generic"
wasm = "{PLUGINS / 'generic.wasm'}"

[[channels]]
name = "telegram"
adapter = "telegram"
auth = "telegram_secret_token"
secret_env = "TELEGRAM_WEBHOOK_SECRET"
account = "my_exoclaw_bot"
api_base_url = "https://api.telegram.org"
token_env = "TELEGRAM_BOT_TOKEN"

[[channels]]
name = "acme"
adapter = "generic"
secret_env = "ACME_WEBHOOK_SECRET"
max_body_bytes = 65536
enabled = false
"""


def load(path: Path) -> str:
    out = io.StringIO()
    call_command("loadconfig", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def channels() -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in ("id", "created", "updated")}
        for row in ChannelEndpoint.objects.order_by("name").values()
    ]


def test_channels_load_dump_and_load_again_to_identical_rows(tmp_path):
    path = tmp_path / "exoclaw.toml"
    path.write_text(CONFIG)
    assert "channels: 2 created" in load(path)
    first = channels()
    assert [(c["name"], c["auth"], c["enabled"], c["max_body_bytes"]) for c in first] == [
        ("acme", "hmac_sha256", False, 65536),
        ("telegram", "telegram_secret_token", True, 1024 * 1024),
    ]
    dumped = tmp_path / "dumped.toml"
    call_command("dumpconfig", "-o", str(dumped), stdout=io.StringIO(), stderr=io.StringIO())
    text = dumped.read_text()
    assert "[[channels]]" in text and 'secret_env = "TELEGRAM_WEBHOOK_SECRET"' in text
    ChannelEndpoint.objects.all().delete()
    load(dumped)
    assert channels() == first
    assert "channels: 0 created, 0 updated, 2 unchanged" in load(dumped)


def test_a_channel_with_an_unknown_adapter_or_a_secret_value_refuses_the_whole_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        CONFIG.replace('adapter = "generic"', 'adapter = "nope"').replace(
            'secret_env = "TELEGRAM_WEBHOOK_SECRET"', 'secret_env = "123:not-a-name"'
        )
    )
    with pytest.raises(CommandError) as e:
        load(path)
    message = str(e.value)
    assert "channels[1].adapter: no plugin named 'nope' (define it under [[plugins]])" in message
    assert "channels[0].secret_env: Give the name of an environment variable" in message
    assert ChannelEndpoint.objects.count() == 0


def test_unknown_keys_and_missing_required_keys_are_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[channels]]\nname = "x"\nadapter = "generic"\nsecret = "oops"\n')
    with pytest.raises(CommandError) as e:
        load(path)
    assert "channels[0]: missing 'secret_env'" in str(e.value)
    assert "channels[0].secret: unknown key" in str(e.value)
