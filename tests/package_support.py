"""Installing the project into a fresh virtualenv, offline: for tests/test_package.py and bench/cli.py."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["exoclaw", "agents", "common", "mcp_api", "mcp_remote", "openai_api", "routing", "sandbox", "webhooks"]


def install_fresh(tmp: Path) -> Path:
    """`pip install` a copy of the project (pip builds in the source folder; the checkout stays clean) into
    a new virtualenv under `tmp` and return the virtualenv. The virtualenv sees this interpreter's packages
    (Django, pip, setuptools…) through a .pth file but not the checkout, so the install needs no download
    and only the installed copy of exoclaw is importable."""
    source = tmp / "src"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    shared = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site_packages(venv) / "shared-site-packages.pth").write_text("\n".join(shared) + "\n")
    install = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", source], capture_output=True, text=True, timeout=300,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip install of the project failed:\n{install.stdout}{install.stderr}")
    return venv


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))
