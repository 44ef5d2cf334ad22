"""The committed channel-adapter .wasm files are exactly what their Zig sources build to."""

import subprocess
import sys

import pytest

from tests.webhooks_fixtures import PLUGINS, TEST_PLUGINS

SOURCES = {
    "telegram": PLUGINS / "src" / "telegram.zig",
    "generic": PLUGINS / "src" / "generic.zig",
    "trap_adapter": TEST_PLUGINS / "src" / "trap_adapter.zig",
}


@pytest.mark.parametrize("name", SOURCES)
def test_committed_wasm_matches_a_fresh_build_of_its_source(name, tmp_path):
    out = tmp_path / f"{name}.wasm"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "build-exe", "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic",
         "-O", "ReleaseSmall", "--stack", "262144", f"-femit-bin={out}", str(SOURCES[name])],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    committed = SOURCES[name].parent.parent / f"{name}.wasm"
    assert out.read_bytes() == committed.read_bytes(), f"{committed} is stale: run `make adapters` and commit it"
