import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.providers.base import WIRE_NAME, LLMRequest, ToolNameMap, ToolSpec, parse_arguments, text_of


def test_dotted_names_become_double_underscores_and_map_back():
    names = ToolNameMap.build(["calc.add", "http_get.fetch"])
    assert names.wire("calc.add") == "calc__add"
    assert names.internal("calc__add") == "calc.add"
    assert names.internal("http_get__fetch") == "http_get.fetch"


def test_valid_names_keep_themselves():
    names = ToolNameMap.build(["echo", "a-b_C9"])
    assert names.to_wire == {"echo": "echo", "a-b_C9": "a-b_C9"}


def test_other_invalid_characters_become_underscores():
    assert ToolNameMap.build(["my plugin/do it!"]).wire("my plugin/do it!") == "my_plugin_do_it_"


def test_collision_with_an_already_valid_name_is_resolved_with_a_suffix():
    names = ToolNameMap.build(["a.b", "a__b"])
    assert names.wire("a__b") == "a__b"
    assert names.wire("a.b") == "a__b_2"
    assert names.internal("a__b_2") == "a.b"


def test_collisions_between_mapped_names_get_increasing_suffixes():
    names = ToolNameMap.build(["x y", "x/y", "x!y"])
    assert sorted(names.to_wire.values()) == ["x_y", "x_y_2", "x_y_3"]
    assert {names.internal(w) for w in names.to_wire.values()} == {"x y", "x/y", "x!y"}


def test_mapping_does_not_depend_on_order():
    assert ToolNameMap.build(["x y", "x/y", "a.b"]) == ToolNameMap.build(["a.b", "x/y", "x y"])


def test_long_names_are_cut_to_64_with_distinct_hash_suffixes():
    a, b = "p." + "a" * 80, "p." + "a" * 79 + "b"
    names = ToolNameMap.build([a, b])
    assert names.wire(a) != names.wire(b)
    assert all(WIRE_NAME.match(w) for w in names.to_wire.values())
    assert names.internal(names.wire(b)) == b


@pytest.mark.parametrize("name", ["", ".", "é", "a" * 200, "plugin.*"])
def test_every_mapped_name_is_valid_for_providers(name):
    assert WIRE_NAME.match(ToolNameMap.build([name]).wire(name))


def test_unknown_wire_names_pass_through_unchanged():
    assert ToolNameMap.build(["calc.add"]).internal("rm_rf") == "rm_rf"


def test_request_map_covers_tools_used_earlier_in_the_history():
    request = LLMRequest(
        model="m",
        messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "old.tool", "input": {}}]}],
        tools=(ToolSpec("calc.add", "", {}),),
    )
    assert ToolNameMap.for_request(request).to_wire == {"calc.add": "calc__add", "old.tool": "old__tool"}


def test_arguments_parse_to_an_object():
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)


def test_empty_arguments_are_an_empty_object():
    assert parse_arguments("  ") == ({}, None)


def test_broken_json_arguments_give_an_error():
    args, error = parse_arguments('{"a": ')
    assert args == {}
    assert "not valid JSON" in error and '{"a": ' in error


def test_non_object_arguments_give_an_error():
    assert parse_arguments("[1]") == ({}, "tool arguments must be a JSON object, got list: '[1]'")


@given(st.lists(st.text(max_size=80), max_size=8))
def test_any_names_map_to_distinct_valid_names_and_back(names):
    mapping = ToolNameMap.build(names)
    assert all(WIRE_NAME.match(w) for w in mapping.to_wire.values())
    assert len(set(mapping.to_wire.values())) == len(set(names))
    assert all(mapping.internal(mapping.wire(n)) == n for n in names)


def test_text_of_joins_text_blocks_and_skips_others():
    message = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "content": "x"},
                                            {"type": "text", "text": "b"}]}
    assert text_of(message) == "ab"
