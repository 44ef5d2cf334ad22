"""`make run` on a fresh checkout says what it is doing: no silent minute of installing."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_first_make_run_announces_each_step_and_lets_pip_show_its_progress(tmp_path):
    venv = tmp_path / "venv"  # does not exist: every install step is due
    plan = subprocess.run(["make", "-n", "run", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    installs = [line for line in lines if "-m pip install" in line and "-r requirements.txt" in line]
    assert installs and all("--quiet" not in line for line in installs), installs
    announced = [line for line in lines if line.startswith('echo "==> ')]
    assert any("installing requirements.txt" in line and "about a minute" in line for line in announced), lines
    assert not any("zig" in line for line in lines), "make run needs no compiler"
    assert lines.index(next(line for line in announced if "installing requirements.txt" in line)) < lines.index(installs[0])
