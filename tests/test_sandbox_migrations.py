"""The sandbox's data migrations, run on a real database: what was stored before is there after."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.sandbox_fixtures import wasm_path

JSON_SECRETS = ("sandbox", "0005_grant_http_secrets_and_limits")
SECRET_ROWS = ("sandbox", "0006_httpsecret")
BEARER = {"host": "https://api.example.com", "header": "Authorization", "format": "Bearer {secret}",
          "secret_env": "EXAMPLE_API_KEY"}
QUERY = {"host": "api.weather.example", "query": "appid", "secret_env": "WEATHER_KEY"}


def migrate(target):
    """Migrate to `target` and return the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def at_json_secrets(transactional_db):
    apps = migrate(JSON_SECRETS)
    yield apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_json_http_secrets_become_rows_and_back(at_json_secrets):
    Plugin = at_json_secrets.get_model("sandbox", "Plugin")
    Grant = at_json_secrets.get_model("sandbox", "CapabilityGrant")
    plugin = Plugin.objects.create(name="weather", wasm_path=str(wasm_path("echo")))
    with_secrets = Grant.objects.create(plugin=plugin, http_secrets=[BEARER, QUERY]).pk
    calc = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    without = Grant.objects.create(plugin=calc, http_secrets=[]).pk

    HttpSecret = migrate(SECRET_ROWS).get_model("sandbox", "HttpSecret")
    rows = HttpSecret.objects.order_by("id").values("grant_id", "host", "header", "query", "format", "secret_env")
    assert list(rows) == [
        {"grant_id": with_secrets, **BEARER, "query": ""},
        {"grant_id": with_secrets, **QUERY, "header": "", "format": "{secret}"},
    ]

    Grant = migrate(JSON_SECRETS).get_model("sandbox", "CapabilityGrant")
    assert Grant.objects.get(pk=with_secrets).http_secrets == [BEARER, {**QUERY, "format": "{secret}"}]
    assert Grant.objects.get(pk=without).http_secrets == []


def test_an_entry_no_row_can_hold_stops_the_migration_by_name(at_json_secrets):
    Plugin = at_json_secrets.get_model("sandbox", "Plugin")
    Grant = at_json_secrets.get_model("sandbox", "CapabilityGrant")
    plugin = Plugin.objects.create(name="weather", wasm_path=str(wasm_path("echo")))
    grant = Grant.objects.create(plugin=plugin, http_secrets=[QUERY, {**QUERY, "token": "sk-live-123"}])
    with pytest.raises(RuntimeError, match=f"grant {grant.pk}: http_secrets entry 2 is not a table of format, header") as e:
        migrate(SECRET_ROWS)
    assert "sk-live-123" not in str(e.value)
    # Nothing was half done: once the entry is corrected, the migration runs.
    Grant.objects.filter(pk=grant.pk).update(http_secrets=[QUERY])
    assert migrate(SECRET_ROWS).get_model("sandbox", "HttpSecret").objects.get().query == "appid"
