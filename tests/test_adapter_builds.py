"""The committed channel-adapter .wasm files are exactly what their Zig sources build to."""

import subprocess
import sys

import pytest

from tests.webhooks_fixtures import PLUGINS

ADAPTERS = ("telegram", "generic", "test_trap_adapter")


@pytest.mark.parametrize("name", ADAPTERS)
def test_committed_wasm_matches_a_fresh_build_of_its_source(name, tmp_path):
    out = tmp_path / f"{name}.wasm"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "build-exe", "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic",
         "-O", "ReleaseSmall", str(PLUGINS / "src" / f"{name}.zig"), f"-femit-bin={out}"],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    assert out.read_bytes() == (PLUGINS / f"{name}.wasm").read_bytes(), f"{name}.wasm is stale: run `make adapters` and commit it"
