"""The config file's TOML writer: tomllib reads back exactly what it wrote."""

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoclaw.tomlwrite import TomlWriteError, dumps

keys = st.text(min_size=1, max_size=8)
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False), st.text(max_size=20),
)
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                         max_leaves=12)


@given(st.dictionaries(keys, json_like, max_size=5), st.dictionaries(keys, json_like, max_size=3))
def test_whatever_it_writes_reads_back_the_same(table, grant):
    doc = {"plugins": [table | {"grant": grant}, {"name": "second"}], "agents": [table]}
    text = dumps(doc, subtables=("grant",))
    assert tomllib.loads(text) == doc


def test_the_layout_gives_every_table_its_own_header():
    text = dumps(
        {
            "agents": [{"name": "demo", "system_prompt": 'Say "hi".\nThen stop.', "tools": ["calc"]}],
            "plugins": [{"name": "calc", "config": {"mode": "fast"},
                         "grant": [{"memory_mb": 16}, {"agent": "demo", "memory_mb": 32}]}],
        },
        subtables=("grant",),
    )
    assert text == (
        "[[agents]]\n"
        'name = "demo"\n'
        'system_prompt = """\nSay \\"hi\\".\nThen stop."""\n'
        'tools = ["calc"]\n'
        "\n"
        "[[plugins]]\n"
        'name = "calc"\n'
        'config = { mode = "fast" }\n'
        "[[plugins.grant]]\n"
        "memory_mb = 16\n"
        "[[plugins.grant]]\n"
        'agent = "demo"\n'
        "memory_mb = 32\n"
    )


def test_null_is_refused_with_its_path():
    with pytest.raises(TomlWriteError, match=r"plugins\[0\]\.config\.retries: TOML has no null value"):
        dumps({"plugins": [{"config": {"retries": None}}]})
