from agents.runtime.tools import Tool, Toolbox, allowed


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


def test_toolbox_offers_only_allowed_tools_and_rechecks_on_lookup():
    tools = [Tool("echo", "echo", "Echo", {"type": "object"}), Tool("calc", "add", "", {})]
    box = Toolbox.build(["echo"], tools)
    assert [s.name for s in box.specs()] == ["echo.echo"]
    assert box.lookup("echo.echo").qualified == "echo.echo"
    assert box.lookup("calc.add") is None
    box.patterns.clear()
    assert box.lookup("echo.echo") is None
