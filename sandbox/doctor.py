"""The sandbox's part of `doctor`: what the grants let plugins reach, and secrets that enter the sandbox."""

import ipaddress
import os
import re

from common.doctor import HIGH, LOW, MEDIUM, Finding

from .models import CapabilityGrant, Plugin
from .netrules import HostRule, is_special

# Names that are never on the public internet: this machine, the local network, cloud metadata services.
PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
# A config key whose value is probably a credential.
SECRET_KEY_NAME = re.compile(r"(^|[_-])(api[_-]?key|key|token|secret|password|passwd|credentials?|auth)$", re.I)


def is_private_host(host: str) -> bool:
    """A granted host (as HostRule.parse normalises it) on this machine or a private network: `localhost`,
    `*.internal` and the like, or a loopback, private, link-local (cloud metadata) or other non-public address."""
    if host == "localhost" or host.endswith(PRIVATE_SUFFIXES):
        return True
    try:
        return is_special(ipaddress.ip_address(host))
    except ValueError:
        return False


def findings() -> list[Finding]:
    found = []
    for plugin in Plugin.objects.filter(enabled=True).order_by("name"):
        if isinstance(plugin.config, dict) and (keys := _secret_keys(plugin.config)):
            found.append(_config_secret(f"plugin {plugin.name}'s config", keys))
    grants = CapabilityGrant.objects.filter(plugin__enabled=True).select_related("plugin", "agent")
    grants = grants.prefetch_related("http_secrets")
    for grant in grants.order_by("plugin__name", "agent__name"):
        found += grant_findings(grant)
    return found


def grant_findings(grant: CapabilityGrant) -> list[Finding]:
    who = f"plugin {grant.plugin.name}'s grant for {f'agent {grant.agent.name}' if grant.agent_id else 'every agent'}"
    rules, unreadable = [], []
    for entry in grant.allowed_hosts if isinstance(grant.allowed_hosts, list) else []:
        try:
            rules.append(HostRule.parse(entry))
        except ValueError as exc:
            unreadable.append(f"{entry!r} ({exc})")
    wildcards = [str(r) for r in rules if r.wildcard]
    private = [str(r) for r in rules if not r.wildcard and is_private_host(r.host)]
    found = []
    if wildcards:
        found.append(Finding(
            "grant-wildcard-host", MEDIUM,
            f"{who} allows {', '.join(wildcards)}: every subdomain, including ones created later, is reachable "
            "(the sandbox still refuses private addresses behind a wildcard)",
            "replace each wildcard with the exact host names the plugin needs",
        ))
    if private:
        found.append(Finding(
            "grant-private-host", HIGH,
            f"{who} allows {', '.join(private)}: this machine or a private network (internal services, cloud "
            "metadata), which the sandbox lets a plugin reach when a grant names it",
            "remove them from allowed_hosts unless the tool is meant to reach them; give a tool only the hosts it needs",
        ))
    if unreadable:
        found.append(Finding(
            "grant-invalid-host", MEDIUM,
            f"{who} has allowed_hosts entries the sandbox cannot read: {'; '.join(unreadable)}; the plugin's "
            "calls fail",
            "correct them on the plugin's page in the admin (the grant's form says what is wrong with each)",
        ))
    if isinstance(grant.config, dict) and (keys := _secret_keys(grant.config)):
        found.append(_config_secret(f"{who}'s config", keys))
    found += _secrets(grant, who, rules, wildcards)
    return found


def _secret_keys(config: dict) -> list[str]:
    return sorted(k for k, v in config.items() if SECRET_KEY_NAME.search(str(k)) and isinstance(v, str) and v)


def _config_secret(where: str, keys: list[str]) -> Finding:
    return Finding(
        "plugin-config-secret", HIGH,
        f"{where} holds {', '.join(keys)} in plain text: it is stored in the database, shown in the admin "
        "and written by dumpconfig",
        "move each value to an environment variable and name it in the grant: as an HTTP secret "
        "(http_secrets, which exoclaw adds to the requests and the plugin never sees) or in secret_env",
    )


def _secrets(grant: CapabilityGrant, who: str, rules: list[HostRule], wildcards: list[str]) -> list[Finding]:
    found = []
    secret_env = grant.secret_env if isinstance(grant.secret_env, dict) else {}
    if secret_env:
        names = ", ".join(f"{key} (from {var})" for key, var in sorted(secret_env.items()))
        reach = ", ".join(str(r) for r in rules) or "no host"
        found.append(Finding(
            "grant-secret-env", MEDIUM if wildcards else LOW,
            f"{who} gives the plugin the secrets {names}: they enter the sandbox, and the plugin can send them "
            f"to {reach}",
            "where the secret is a credential for one HTTP service, give it as an HTTP secret instead "
            "(http_secrets: exoclaw adds it to the requests to that host, the plugin never sees it); else keep "
            "allowed_hosts to that service and the secret to the agents that need it",
        ))
    http_envs = [s.secret_env for s in grant.http_secrets.all()]
    unset = sorted({var for var in [*secret_env.values(), *http_envs] if not os.environ.get(var)})
    if unset:
        found.append(Finding(
            "grant-secret-unset", MEDIUM,
            f"{who} reads {', '.join(unset)}, unset in this environment: the plugin's calls fail or go without "
            "their credentials",
            f"set {', '.join(unset)} in the environment of every exoclaw process",
        ))
    return found
