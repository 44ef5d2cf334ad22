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
sender_policy = "allowlist"
allowed_senders = ["111222333", "444555666"]

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
    assert [(c["name"], c["auth"], c["enabled"], c["max_body_bytes"], c["sender_policy"], c["allowed_senders"])
            for c in first] == [
        ("acme", "hmac_sha256", False, 65536, "pairing", []),
        ("telegram", "telegram_secret_token", True, 1024 * 1024, "allowlist", ["111222333", "444555666"]),
    ]
    dumped = tmp_path / "dumped.toml"
    call_command("dumpconfig", "-o", str(dumped), stdout=io.StringIO(), stderr=io.StringIO())
    text = dumped.read_text()
    assert "[[channels]]" in text and 'secret_env = "TELEGRAM_WEBHOOK_SECRET"' in text
    assert 'sender_policy = "allowlist"' in text and "sender_policy = \"pairing\"" not in text
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


def test_slack_and_discord_channels_load_and_a_bad_sender_policy_is_named(tmp_path):
    path = tmp_path / "exoclaw.toml"
    path.write_text(f"""
[[plugins]]
name = "slack"
wasm = "{PLUGINS / 'slack.wasm'}"

[[plugins]]
name = "discord"
wasm = "{PLUGINS / 'discord.wasm'}"

[[channels]]
name = "slack"
adapter = "slack"
auth = "slack_signature"
secret_env = "SLACK_SIGNING_SECRET"
api_base_url = "https://slack.com/api"
token_env = "SLACK_BOT_TOKEN"

[[channels]]
name = "discord"
adapter = "discord"
auth = "discord_ed25519"
secret_env = "DISCORD_PUBLIC_KEY"
api_base_url = "https://discord.com/api/v10"
sender_policy = "open"
""")
    assert "channels: 2 created" in load(path)
    assert [(c["name"], c["auth"], c["sender_policy"]) for c in channels()] == [
        ("discord", "discord_ed25519", "open"), ("slack", "slack_signature", "pairing")
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('sender_policy = "open"', 'sender_policy = "everyone"\nallowed_senders = [1, 2]'))
    with pytest.raises(CommandError) as e:
        load(bad)
    assert "channels[1].sender_policy: Value 'everyone' is not a valid choice." in str(e.value)
    assert "channels[1].allowed_senders: Give a list of user ids (strings)." in str(e.value)


@pytest.mark.django_db(transaction=True)
def test_channels_that_existed_before_sender_policies_stay_open_and_new_ones_pair():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("webhooks", "0003_lease_index")], [("webhooks", "0004_slack_discord_and_senders")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    plugin = old.get_model("sandbox", "Plugin").objects.create(name="telegram", wasm_path=str(PLUGINS / "telegram.wasm"))
    old.get_model("webhooks", "ChannelEndpoint").objects.create(name="telegram", adapter=plugin, secret_env="TG")
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("webhooks", "ChannelEndpoint")
    assert new.objects.get(name="telegram").sender_policy == "open"
    assert new(name="fresh").sender_policy == "pairing"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
