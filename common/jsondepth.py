"""How deep a decoded JSON value nests, checked without recursion (a hostile value could be deep
enough to make a recursive walk raise RecursionError)."""


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
