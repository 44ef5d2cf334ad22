from agents.runtime.tools import SAFE_NAME, Tool, Toolbox, allowed, safe_name


def test_plugin_pattern_allows_every_tool_of_that_plugin_only():
    assert allowed(["calc"], "calc", "add")
    assert allowed(["calc.*"], "calc", "mul")
    assert not allowed(["calc"], "calculator", "add")


def test_tool_pattern_allows_that_tool_only():
    assert allowed(["http_get.fetch"], "http_get", "fetch")
    assert not allowed(["http_get.fetch"], "http_get", "post")


def test_star_allows_everything_and_empty_allows_nothing():
    assert allowed(["*"], "anything", "at_all")
    assert not allowed([], "echo", "echo")


def test_safe_names_are_valid_for_providers_and_distinct():
    names = {safe_name("echo", "echo"), safe_name("my-plugin", "do.it"), safe_name("my-plugin", "do_it"),
             safe_name("p" * 40, "t" * 40), safe_name("p" * 40, "t" * 39 + "u")}
    assert len(names) == 5
    assert all(SAFE_NAME.match(n) for n in names), names
    assert safe_name("echo", "echo") == "echo__echo"


def test_toolbox_offers_only_allowed_tools_and_rechecks_on_lookup():
    tools = [Tool("echo", "echo", "Echo", {"type": "object"}), Tool("calc", "add", "", {})]
    box = Toolbox.build(["echo"], tools)
    assert [s["name"] for s in box.specs()] == ["echo__echo"]
    assert box.lookup("echo__echo").qualified == "echo.echo"
    assert box.lookup("calc__add") is None
    box.patterns.clear()
    assert box.lookup("echo__echo") is None
