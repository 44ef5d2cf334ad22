from agents.runtime.tools import Toolbox, tool_allowed
from sandbox.tools import ToolSpec


def test_allowlist_patterns():
    assert tool_allowed(["*"], "calc", "calc")
    assert tool_allowed(["calc"], "calc", "anything")
    assert tool_allowed(["http_get.fetch"], "http_get", "fetch")
    assert tool_allowed(["http_get.*"], "http_get", "fetch")
    assert not tool_allowed(["http_get.fetch"], "http_get", "post")
    assert not tool_allowed(["calc"], "calculator", "calc")
    assert not tool_allowed([], "calc", "calc")


def test_toolbox_offers_only_allowed_tools_in_a_stable_order():
    tools = [ToolSpec("echo", "echo", "Echo", {"type": "object"}), ToolSpec("calc", "calc", "", {}),
             ToolSpec("http_get", "fetch", "Fetch", {"type": "object"})]
    box = Toolbox.build(["echo", "calc.*"], tools)
    assert [s.name for s in box.specs()] == ["calc.calc", "echo.echo"]
    assert box.specs()[0].description == "calc.calc" and box.specs()[0].input_schema == {"type": "object"}


def test_toolbox_refuses_names_the_llm_made_up_or_the_allowlist_does_not_have():
    offered = [ToolSpec("echo", "echo", "Echo", {"type": "object"}), ToolSpec("http_get", "fetch", "", {})]
    box = Toolbox.build(["echo.echo"], offered)
    assert box.lookup("echo.echo").qualified_name == "echo.echo"
    assert box.lookup("http_get.fetch") is None
    assert box.lookup("echo__echo") is None
    assert Toolbox.build([], offered).lookup("echo.echo") is None
