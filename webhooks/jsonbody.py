"""A webhook body as JSON, bounded: a malformed or deeply nested body is a typed error (400), never
a RecursionError (500) in the view or in the adapter."""

import json

MAX_DEPTH = 64


class MalformedBody(ValueError):
    """The body is not JSON exoclaw accepts; the message says why."""


def deeper_than(value, limit: int) -> bool:
    """True when arrays/objects nest more than `limit` levels (a bare `[]` is one level)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


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
