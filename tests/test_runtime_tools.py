from agents.runtime.tools import Toolbox
from sandbox.tools import ToolSpec


def test_toolbox_offers_only_allowed_tools_in_a_stable_order():
    tools = [ToolSpec("echo", "echo", "Echo", {"type": "object"}), ToolSpec("calc", "calc", "", {}),
             ToolSpec("http_get", "fetch", "Fetch", {"type": "object"})]
    box = Toolbox.build(["echo", "calc.*"], tools)
    assert [s.name for s in box.specs()] == ["calc.calc", "echo.echo"]
    assert box.specs()[0].description == "calc.calc" and box.specs()[0].input_schema == {"type": "object"}


def test_toolbox_refuses_names_the_llm_made_up_or_the_allowlist_no_longer_has():
    box = Toolbox.build(["echo.echo"], [ToolSpec("echo", "echo", "Echo", {"type": "object"})])
    assert box.lookup("echo.echo").qualified_name == "echo.echo"
    assert box.lookup("http_get.fetch") is None
    assert box.lookup("echo__echo") is None
    box.patterns.clear()
    assert box.lookup("echo.echo") is None
