"""The webhooks' part of `doctor`: channels anyone may talk to, and channels missing their secret."""

import os

from common.doctor import HIGH, MEDIUM, Finding, command

from .models import ChannelEndpoint


def findings() -> list[Finding]:
    found = []
    for endpoint in ChannelEndpoint.objects.filter(enabled=True).order_by("name"):
        if not os.environ.get(endpoint.secret_env):
            found.append(Finding(
                "webhook-secret-unset", MEDIUM,
                f"channel {endpoint.name}: {endpoint.secret_env} is unset in this environment, so /hooks/"
                f"{endpoint.name}/ refuses every request",
                f"set {endpoint.secret_env} to the platform's secret in the environment of every exoclaw process",
            ))
        if endpoint.sender_policy == ChannelEndpoint.SenderPolicy.OPEN:
            found.append(Finding(
                "webhook-open-senders", HIGH,
                f"channel {endpoint.name} answers anyone who can reach the bot (sender_policy open): strangers "
                "run its agent, its tools and your LLM budget",
                f"set sender_policy to pairing (approve people with {command('pair approve CODE')}) or allowlist "
                f"(allowed_senders) on the channel {endpoint.name}",
            ))
    return found
