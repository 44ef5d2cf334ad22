"""A small TOML writer for the config file's shape: top-level arrays of tables (`[[agents]]`), named
sub-tables inside them (`[plugins.grant]`), and every other value inline.

Written here rather than taken from a library because the layout is part of the format: each
agent, plugin and binding gets its own `[[...]]` header, so files diff well and errors can name
lines. tomllib reads everything this writes (tests check the round trip).
"""

import math
import re

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
# Lines longer than this put each list item on its own line.
WIDTH = 100


class TomlWriteError(ValueError):
    """A value that TOML cannot hold (null, or a type that is not JSON-like)."""


def dumps(doc: dict[str, list[dict]], subtables: tuple[str, ...] = (), header: str = "",
          nested: tuple[str, ...] = ()) -> str:
    """`doc` maps section names to lists of tables; keys named in `subtables` become `[section.key]`
    (a dict) or `[[section.key]]` (a list of dicts) after the table's own keys, and keys named in
    `nested` inside those, when they hold a non-empty list of dicts, `[[section.key.nested]]`."""
    out = [header] if header else []
    for section, tables in doc.items():
        for i, table in enumerate(tables):
            out.append(f"[[{key(section)}]]")
            out.extend(_lines(table, f"{section}[{i}]", subtables))
            for name in subtables:
                sub = table.get(name)
                subs = [(f"[{key(section)}.{key(name)}]", sub, f"{section}[{i}].{name}")] if isinstance(sub, dict) else [
                    (f"[[{key(section)}.{key(name)}]]", item, f"{section}[{i}].{name}[{j}]")
                    for j, item in enumerate(sub if isinstance(sub, list) else [])]
                for heading, item, path in subs:
                    inner = tuple(n for n in nested if _tables(item.get(n)))
                    out.append(heading)
                    out.extend(_lines(item, path, inner))
                    for n in inner:
                        for k, entry in enumerate(item[n]):
                            out.append(f"[[{key(section)}.{key(name)}.{key(n)}]]")
                            out.extend(_lines(entry, f"{path}.{n}[{k}]", ()))
            out.append("")
    return "\n".join(out)


def _tables(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _lines(table: dict, path: str, subtables) -> list[str]:
    return [f"{key(k)} = {value(v, f'{path}.{k}')}" for k, v in table.items() if k not in subtables]


def key(k: str) -> str:
    return k if BARE_KEY.fullmatch(k) else _basic(k)


def string(s: str) -> str:
    if "\n" in s:
        # A multi-line basic string reads like the text it holds; the newline after the opening
        # quotes is dropped by TOML readers.
        body = "".join(ch if ch == "\n" else _escape(ch) for ch in s)
        return f'"""\n{body}"""'
    return _basic(s)


def _basic(s: str) -> str:
    return '"' + "".join(_escape(ch) for ch in s) + '"'


def _escape(ch: str) -> str:
    if ch in ESCAPES:
        return ESCAPES[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\u{ord(ch):04x}"
    return ch


def value(v, path: str = "value") -> str:
    if v is None:
        raise TomlWriteError(f"{path}: TOML has no null value; remove the key or give it a value")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(x, f'{path}.{k}')}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        items = [value(x, f"{path}[{i}]") for i, x in enumerate(v)]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) <= WIDTH and "\n" not in one_line:
            return one_line
        return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    raise TomlWriteError(f"{path}: cannot write a {type(v).__name__} to TOML")
