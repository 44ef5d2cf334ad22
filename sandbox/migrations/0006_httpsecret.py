"""HTTP secrets become rows of their own (HttpSecret), so the admin can edit them inline on the grant.

The rows are created without a reverse accessor on the grant, whose JSON field is still called
http_secrets while it is copied; once the field is gone, the accessor takes its name.
"""

import django.db.models.deletion
from django.db import migrations, models

KEYS = {"host", "header", "query", "format", "secret_env"}


def json_to_rows(apps, schema_editor):
    CapabilityGrant = apps.get_model("sandbox", "CapabilityGrant")
    HttpSecret = apps.get_model("sandbox", "HttpSecret")
    rows = []
    for grant_id, entries in CapabilityGrant.objects.order_by("id").values_list("id", "http_secrets"):
        for i, entry in enumerate(entries or []):
            # What a row cannot hold is refused rather than dropped: a lost secret would send requests without it.
            # The entry itself is not shown: a mistaken one may hold a secret's value.
            if not isinstance(entry, dict) or not set(entry) <= KEYS:
                raise RuntimeError(
                    f"grant {grant_id}: http_secrets entry {i + 1} is not a table of {', '.join(sorted(KEYS))}; "
                    "correct it in the database and migrate again"
                )
            rows.append(HttpSecret(
                grant_id=grant_id,
                host=str(entry.get("host") or ""),
                header=str(entry.get("header") or ""),
                query=str(entry.get("query") or ""),
                format=str(entry.get("format") or "{secret}"),
                secret_env=str(entry.get("secret_env") or ""),
            ))
    HttpSecret.objects.bulk_create(rows)


def rows_to_json(apps, schema_editor):
    CapabilityGrant = apps.get_model("sandbox", "CapabilityGrant")
    HttpSecret = apps.get_model("sandbox", "HttpSecret")
    by_grant = {}
    for secret in HttpSecret.objects.order_by("id"):
        entry = {"host": secret.host, "secret_env": secret.secret_env, "format": secret.format}
        entry |= {"header": secret.header} if secret.header else {"query": secret.query}
        by_grant.setdefault(secret.grant_id, []).append(entry)
    for grant_id, entries in by_grant.items():
        CapabilityGrant.objects.filter(pk=grant_id).update(http_secrets=entries)


class Migration(migrations.Migration):

    dependencies = [
        ("sandbox", "0005_grant_http_secrets_and_limits"),
    ]

    operations = [
        migrations.CreateModel(
            name="HttpSecret",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("host", models.CharField(help_text="The one host the secret belongs to, written like an allowed_hosts entry without a wildcard: https://api.example.com.", max_length=300)),
                ("header", models.CharField(blank=True, help_text="Send the secret in this header (Authorization)…", max_length=100)),
                ("query", models.CharField(blank=True, help_text="…or as this query parameter (appid). Exactly one of the two.", max_length=100)),
                ("format", models.CharField(default="{secret}", help_text="The value sent, with {secret} where the secret goes: Bearer {secret}.", max_length=500)),
                ("secret_env", models.CharField(help_text="Name of the environment variable holding the secret, never the secret itself.", max_length=128, verbose_name="environment variable")),
                ("grant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="sandbox.capabilitygrant")),
            ],
            options={
                "verbose_name": "HTTP secret",
                "ordering": ["id"],
            },
        ),
        migrations.RunPython(json_to_rows, rows_to_json),
        migrations.RemoveField(
            model_name="capabilitygrant",
            name="http_secrets",
        ),
        migrations.AlterField(
            model_name="httpsecret",
            name="grant",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="http_secrets", to="sandbox.capabilitygrant"),
        ),
    ]
