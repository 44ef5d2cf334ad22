"""The dependency rules of docs/architecture.md, as import-linter contracts in `.importlinter`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--config", config, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_tree_keeps_every_dependency_rule():
    result = lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_rule_is_reported(tmp_path):
    # The same graph with one more rule that the tree breaks on purpose (agents.rpc registers its
    # methods in the gateway): the linter must see the import and fail.
    config = tmp_path / "contracts.ini"
    config.write_text((ROOT / ".importlinter").read_text() + """
[importlinter:contract:probe]
name = probe: agents never import the gateway
type = forbidden
source_modules = agents
forbidden_modules = exoclaw.gateway
""")
    result = lint(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "probe: agents never import the gateway BROKEN" in result.stdout
    assert "agents.rpc -> exoclaw.gateway" in result.stdout
