"""Store maintenance commands when the running server holds the embedded store: they ask it over
`/ws` (agents/maintenance_rpc.py) instead of refusing.

    try:
        counts = get_store().sync.prune(age)
    except StoreLocked as held:
        counts = call_server(self, "sessions.prune", {...}, held, **options)
"""

import asyncio
import os

from django.conf import settings
from django.core.management.base import CommandError

from exoclaw.client import Gateway, GatewayError

# Pruning a large store through the server may take a while; the call waits this long for it.
CALL_TIMEOUT = 3600.0


def add_server_arguments(parser) -> None:
    parser.add_argument(
        "--url", default=None,
        help="the running server's WebSocket URL, used when it holds the embedded session store "
        "(default: ws://EXOCLAW_BIND/ws)",
    )
    parser.add_argument(
        "--token", default=None,
        help="an API token with the admin scope for that server (default: EXOCLAW_TOKEN; none is needed "
        "on a loopback-bound server)",
    )


async def _call(url: str, token: str | None, method: str, params: dict):
    gw = await Gateway.connect(url, token)
    try:
        return await gw.call(method, params, timeout=CALL_TIMEOUT)
    finally:
        await gw.close()


def call_server(command, method: str, params: dict, held: Exception, *, url: str | None, token: str | None) -> dict:
    """Call `method` on the server at `url`, telling the user on stderr; CommandError if it cannot."""
    url = url or f"ws://{settings.EXOCLAW_BIND}/ws"
    token = token or os.environ.get("EXOCLAW_TOKEN") or None
    command.stderr.write(f"The session store is held by the running server; asking it at {url} …")
    try:
        return asyncio.run(_call(url, token, method, params))
    except GatewayError as e:
        raise CommandError(f"{held}\nAsking the running server at {url} failed too: {e} "
                           "(give its address with --url, and a token with --token).") from None
