"""Signed requests are accepted once: a replay of the same signed bytes while their timestamp is
still fresh is refused. The record lives in the database, so it holds across processes."""

from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone

from .models import SeenRequest
from .signatures import MAX_AGE

# A timestamp is accepted up to MAX_AGE either side of the clock: a record kept this long outlives it.
KEEP = timedelta(seconds=2 * MAX_AGE)


async def first_time(endpoint, digest: str) -> bool:
    """Record the request `digest` for `endpoint`; False when it was seen before."""
    try:
        await SeenRequest.objects.acreate(endpoint=endpoint, digest=digest, expires=timezone.now() + KEEP)
    except IntegrityError:
        return False
    return True


async def purge() -> int:
    """Forget requests whose timestamps can no longer pass the freshness check."""
    deleted, _ = await SeenRequest.objects.filter(expires__lt=timezone.now()).adelete()
    return deleted
