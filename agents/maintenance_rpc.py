"""Session-store maintenance through the running server: `sessions.prune` and `store.migrate`.

The embedded store (SurrealKV) serves one process, so while `serve` holds it `prunesessions` and
`surreal_migrate` cannot open it; they call these methods over `/ws` instead (scope `admin`), and the
server does the work on the store it already has open. Registered from AgentsConfig.ready().
"""

import logging

from agents.store import InvalidInput, StoreError, get_store
from agents.store.shapes import parse_age
from exoclaw.gateway.errors import InternalError, InvalidParams
from exoclaw.gateway.registry import Param, method

log = logging.getLogger(__name__)


@method(
    "sessions.prune",
    scope="admin",
    params={"older_than": Param(str, required=True, max_length=32), "dry_run": Param(bool, default=False)},
)
async def sessions_prune(ctx, *, older_than: str, dry_run: bool) -> dict:
    """Delete (or with dry_run count) sessions idle for longer than `older_than` ("30d", "12h", …)."""
    try:
        age = parse_age(older_than.strip())
    except InvalidInput as e:
        raise InvalidParams("older_than", str(e)) from None
    try:
        counts = await get_store().prune(age, dry_run=dry_run)
    except StoreError as e:
        raise InternalError(str(e), reason="store_error") from None
    log.info("%s %s sessions idle for more than %s (asked by %s)", "counted" if dry_run else "pruned",
             counts["sessions"], older_than.strip(), ctx.principal.name)
    return {**counts, "dry_run": dry_run}


@method("store.migrate", scope="admin")
async def store_migrate(ctx) -> dict:
    """Apply the session store's schema if its recorded version differs: {"from", "to", "changed"}.
    "changed" says what this call did: a schema the server applied when it opened is "already applied"."""
    store = get_store()
    opened_before = store.migration is not None
    try:
        result = await store.migrate()
    except StoreError as e:
        raise InternalError(str(e), reason="store_error") from None
    if opened_before and result == store.migration:
        # What opening the store did, earlier: this call changed nothing.
        return {"from": result["to"], "to": result["to"], "changed": False}
    return result
