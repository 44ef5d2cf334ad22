"""A test-only stand-in for a SurrealDB server. Not for production: no authentication, one shared
namespace/database session for every client, no TLS.

No SurrealDB server binary can be installed on the test machines, but the embedded engine's
`execute()` takes and returns exactly the CBOR RPC messages a server exchanges on its `/rpc`
WebSocket (subprotocol `cbor`). Relaying frames between the two lets several processes use the real
SDK's `ws://` client against one store, which is what a multi-process deployment does.

In a test, use the `surreal_ws_url` fixture (tests/store_fixtures.py). From a shell, or as a
subprocess of a test:

    python tests/surreal_ws_server.py --url surrealkv:///tmp/sessions --port 0

prints `ready ws://127.0.0.1:PORT` on stdout once it accepts connections.

The stand-in answers one request at a time: the embedded engines (surrealdb-core 2.3.10, both
`mem://` and `surrealkv://`) sometimes lose updates between concurrent transactions instead of
failing one with a conflict, which is what a server on RocksDB or TiKV does. `one_at_a_time=False`
lets requests overlap, for tests of how clients handle write conflicts.
"""

import argparse
import asyncio
import contextlib
import sys
import threading

import websockets
from surrealdb._surrealdb_ext import AsyncEmbeddedDB
from surrealdb.data.cbor import decode, encode


class StandInServer:
    def __init__(self, url: str = "mem://", one_at_a_time: bool = True):
        self.url = url
        self.port: int | None = None
        self._turn = asyncio.Lock() if one_at_a_time else contextlib.nullcontext()
        self._db = AsyncEmbeddedDB(url)
        self._server = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        await self._db.connect()
        self._server = await websockets.serve(
            self._serve, host, port, subprotocols=[websockets.Subprotocol("cbor")], max_size=None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return f"ws://{host}:{self.port}"

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        await self._db.close()

    async def _serve(self, ws) -> None:
        if ws.request.path != "/rpc":
            await ws.close(1008, "SurrealDB speaks RPC on /rpc")
            return
        pending = set()
        try:
            async for frame in ws:
                # Read on while earlier requests run, as a server does: clients match responses by id.
                task = asyncio.create_task(self._answer(ws, frame))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except websockets.ConnectionClosed:
            pass

    async def _answer(self, ws, frame: bytes) -> None:
        try:
            async with self._turn:
                response = await self._db.execute(frame)
        except Exception as e:
            request = decode(frame)
            response = encode({"id": request.get("id"), "error": {"code": -32000, "message": str(e)}})
        try:
            await ws.send(response)
        except websockets.ConnectionClosed:
            pass


class ServerThread:
    """A StandInServer on its own event-loop thread, for tests whose clients live on other loops."""

    def __init__(self, url: str = "mem://", port: int = 0, one_at_a_time: bool = True):
        self.server = StandInServer(url, one_at_a_time)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="surreal-ws-stand-in", daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.server.start(port=port), self.loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _main(url: str, host: str, port: int) -> None:
    server = StandInServer(url)
    print("ready", await server.start(host, port), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Test-only SurrealDB stand-in: the embedded engine behind ws://")
    parser.add_argument("--url", default="mem://", help="embedded engine to serve (mem:// or surrealkv://PATH)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, a free port)")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.url, args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)
