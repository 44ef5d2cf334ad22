"""The ASGI app behind /mcp (mounted in exoclaw/asgi.py, ahead of Django): check who is calling,
then hand the request to the SDK's Streamable HTTP session manager. A refusal is an HTTP status with
a JSON-RPC error body, never a traceback."""

import json

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from .auth import Refused, authenticate
from .server import PRINCIPAL, session_manager

PATH = "/mcp"


def serves(path: str) -> bool:
    return path in (PATH, PATH + "/")


async def _refuse(send, refused: Refused) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
        "code": refused.code, "message": refused.message, "data": {"reason": refused.reason}}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in refused.headers.items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def application(scope, receive, send):
    try:
        principal = await authenticate(scope)
    except Refused as refused:
        return await _refuse(send, refused)
    # The SDK binds a handshake-era session to the credential that opened it (another token gets 404).
    user = AuthenticatedUser(AccessToken(token="", client_id=principal.name, scopes=sorted(principal.scopes)))
    scope = {**scope, PRINCIPAL: principal, "user": user}
    manager = await session_manager()
    await manager.handle_request(scope, receive, send)
