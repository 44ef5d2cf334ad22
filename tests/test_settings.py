"""Settings: every variable is documented, and the production check passes with the documented set."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.net_fixtures import tls_ca  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

# The production variables docs/config.md lists (with example values).
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "exoclaw.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://exoclaw.example.com",
    "EXOCLAW_TOKEN": "exo_" + "x" * 43,
    "BEHIND_TLS_PROXY": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def settings_variables() -> set[str]:
    source = (ROOT / "exoclaw" / "settings.py").read_text()
    return set(re.findall(r"""env\.\w+\(\s*["']([A-Z0-9_]+)["']""", source))


def check_deploy(tmp_path, **variables) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env = keep | {"DJANGO_SETTINGS_MODULE": "exoclaw.settings", "EXOCLAW_VAR_DIR": str(tmp_path)} | variables
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_every_variable_settings_reads_is_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = settings_variables() - documented
    assert not missing, f"add these to .env.example (and docs/config.md): {sorted(missing)}"


def test_every_variable_settings_reads_is_explained_in_docs():
    docs = (ROOT / "docs" / "config.md").read_text()
    missing = {v for v in settings_variables() if f"`{v}`" not in docs}
    assert not missing, f"explain these in docs/config.md: {sorted(missing)}"


def test_the_production_variables_are_documented():
    docs = (ROOT / "docs" / "config.md").read_text()
    production = docs.split("## Production", 1)[1]
    assert all(f"{name}=" in production for name in PRODUCTION), production


def test_check_deploy_passes_with_the_production_variables(tmp_path):
    result = check_deploy(tmp_path, SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_passes_with_the_generated_secret_key(tmp_path):
    result = check_deploy(tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_check_deploy_fails_without_them(tmp_path):
    result = check_deploy(tmp_path, DEBUG="false")
    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W004" in result.stderr


def test_a_sandbox_ca_bundle_of_ca_certificates_is_accepted(tmp_path, tls_ca):
    result = check_deploy(tmp_path, SANDBOX_HTTP_CA_BUNDLE=str(tls_ca.path), **PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_a_sandbox_ca_bundle_that_is_not_a_pem_file_stops_the_start(tmp_path, content):
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    result = check_deploy(tmp_path, SANDBOX_HTTP_CA_BUNDLE=str(bundle), **PRODUCTION)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: SANDBOX_HTTP_CA_BUNDLE={bundle}: not a PEM file of CA certificates" in result.stderr
