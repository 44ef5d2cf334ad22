"""The committed .wasm files are exactly what their sources build to (`make plugins`)."""

from sandbox.build_plugins import build, targets


def test_committed_wasm_files_match_a_fresh_build_of_their_sources(tmp_path):
    found = targets()
    assert {t.wasm_name for t in found} >= {"echo.wasm", "calc.wasm", "http_get.wasm", "read_file.wasm", "loop.wasm"}
    stale = []
    for target in found:
        fresh = build(target, tmp_path)
        if not target.committed.exists() or fresh.read_bytes() != target.committed.read_bytes():
            stale.append(str(target.committed))
    assert stale == [], f"rebuild with `make plugins` and commit: {stale}"
