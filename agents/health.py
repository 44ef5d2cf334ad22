"""The session store's health, as the gateway's `status` method reports it (registered in `rpc.py`)."""

from .store import get_store


async def store_health() -> str:
    report = await get_store().health()
    if not report["ok"]:
        return f"error: {report.get('error') or 'schema version ' + str(report.get('schema_version'))}"
    return f"ok ({report['engine']}, {report['latency_ms']} ms)"
