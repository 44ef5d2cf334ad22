"""The sandbox's part of `doctor`: what the grants let plugins reach, and secrets that enter the sandbox."""

import ipaddress
import os
import re

from common.doctor import HIGH, LOW, MEDIUM, Finding

from .models import CapabilityGrant, Plugin

GLOB = re.compile(r"[*?\[]")
# Patterns that match every host name.
ANY_HOST = {"*", "**", "*.*", "*.*.*", "*.*.*.*"}
# Names that are never on the public internet: this machine, the local network, cloud metadata services.
PRIVATE_NAMES = ("localhost", ".localhost", ".local", ".internal", ".lan", ".home.arpa")
# A config key whose value is probably a credential.
SECRET_KEY_NAME = re.compile(r"(^|[_-])(api[_-]?key|key|token|secret|password|passwd|credentials?|auth)$", re.I)


def is_private_host(pattern: str) -> bool:
    """A host name, address or pattern that reaches this machine or a private network: loopback, RFC 1918,
    link-local (cloud metadata at 169.254.169.254), unique-local IPv6, `localhost`, `*.internal`, `10.*`."""
    host = pattern.lower().strip("[]")
    if host == "localhost" or host.endswith(PRIVATE_NAMES):
        return True
    literal = GLOB.split(host, maxsplit=1)[0]
    try:
        if literal == host:
            return not ipaddress.ip_address(host).is_global
        # An address pattern such as 10.* or 192.168.1.*: its fixed octets name the network.
        octets = literal.split(".")[:-1]
        if literal.endswith(".") and octets and all(o.isdigit() for o in octets):
            return not ipaddress.ip_address(".".join(octets + ["0"] * (4 - len(octets)))).is_global
    except ValueError:
        return False
    return False


def _who(grant: CapabilityGrant) -> str:
    return f"plugin {grant.plugin.name}'s grant for {f'agent {grant.agent.name}' if grant.agent_id else 'every agent'}"


def _secret_keys(config: dict) -> list[str]:
    return sorted(k for k, v in config.items() if SECRET_KEY_NAME.search(str(k)) and isinstance(v, str) and v)


def findings() -> list[Finding]:
    found = []
    for plugin in Plugin.objects.filter(enabled=True).order_by("name"):
        if isinstance(plugin.config, dict) and (keys := _secret_keys(plugin.config)):
            found.append(_config_secret(f"plugin {plugin.name}'s config", keys))
    grants = CapabilityGrant.objects.filter(plugin__enabled=True).select_related("plugin", "agent")
    for grant in grants.order_by("plugin__name", "agent__name"):
        found += grant_findings(grant)
    return found


def grant_findings(grant: CapabilityGrant) -> list[Finding]:
    who = _who(grant)
    hosts = [h for h in grant.allowed_hosts if isinstance(h, str)]
    anywhere = [h for h in hosts if h in ANY_HOST]
    wildcards = [h for h in hosts if GLOB.search(h) and h not in anywhere]
    private = [h for h in hosts if is_private_host(h)]
    found = []
    if anywhere:
        found.append(Finding(
            "grant-any-host", HIGH,
            f"{who} allows every host ({', '.join(anywhere)}): the plugin can reach any server, this machine "
            "and the cloud metadata service included, and send there whatever it is given",
            "list the exact hosts the plugin needs in allowed_hosts (the plugin's page in the admin)",
        ))
    if wildcards:
        found.append(Finding(
            "grant-wildcard-host", MEDIUM,
            f"{who} allows host patterns {', '.join(wildcards)}: every matching name, including ones "
            "registered later, is reachable",
            "replace each pattern with the exact host names the plugin needs",
        ))
    if private:
        found.append(Finding(
            "grant-private-host", HIGH,
            f"{who} allows {', '.join(private)}: this machine or a private network (internal services, "
            "cloud metadata) is reachable from the sandbox",
            "remove them from allowed_hosts; give a tool only the public hosts it needs",
        ))
    if isinstance(grant.config, dict) and (keys := _secret_keys(grant.config)):
        found.append(_config_secret(f"{who}'s config", keys))
    if isinstance(grant.secret_env, dict) and grant.secret_env:
        found += _secret_env(grant, who, hosts, anywhere, wildcards)
    return found


def _config_secret(where: str, keys: list[str]) -> Finding:
    return Finding(
        "plugin-config-secret", HIGH,
        f"{where} holds {', '.join(keys)} in plain text: it is stored in the database, shown in the admin "
        "and written by dumpconfig",
        f'move each value to an environment variable and name it in the grant\'s secret_env, e.g. '
        f'{{"{keys[0]}": "{keys[0].upper()}_VAR"}}, then delete it from the config',
    )


def _secret_env(grant, who, hosts, anywhere, wildcards) -> list[Finding]:
    names = ", ".join(f"{key} (from {var})" for key, var in sorted(grant.secret_env.items()))
    reach = ", ".join(hosts) or "no host"
    severity = HIGH if anywhere else MEDIUM if wildcards else LOW
    found = [Finding(
        "grant-secret-env", severity,
        f"{who} gives the plugin the secrets {names}: they enter the sandbox, and the plugin can send them "
        f"to {reach}",
        "keep allowed_hosts to the service each secret is for, and give the secret only to the agents "
        "that need it (a grant per agent)",
    )]
    unset = sorted(var for var in grant.secret_env.values() if not os.environ.get(var))
    if unset:
        found.append(Finding(
            "grant-secret-unset", MEDIUM,
            f"{who} reads {', '.join(unset)}, unset in this environment: every call of the plugin fails "
            "with not_found",
            f"set {', '.join(unset)} in the environment of every exoclaw process",
        ))
    return found
