"""A webhook body as JSON, bounded: a malformed or deeply nested body is a typed error (400), never
a RecursionError (500) in the view or in the adapter."""

import json

from common.jsondepth import deeper_than

MAX_DEPTH = 64


class MalformedBody(ValueError):
    """The body is not JSON exoclaw accepts; the message says why."""


def parse(body: bytes, max_depth: int = MAX_DEPTH):
    """The body's JSON value, or raise MalformedBody."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise MalformedBody(f"The body nests deeper than {max_depth} levels.") from None
    except ValueError:
        # JSONDecodeError, bad UTF-8, and ints with more digits than Python converts.
        raise MalformedBody("The body is not JSON.") from None
    if isinstance(value, (dict, list)) and deeper_than(value, max_depth):
        raise MalformedBody(f"The body nests deeper than {max_depth} levels.")
    return value
