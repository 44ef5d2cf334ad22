"""The package: requirements.txt and pyproject.toml agree, and `pip install` of the project into a fresh
virtualenv gives an `exoclaw` command that lists its commands, serves a fresh install and chats."""

import os
import re
import subprocess
import tomllib
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from exoclaw import __version__ as exoclaw_version
from tests.clients_fixtures import free_port, wait_for_port
from tests.package_support import PACKAGES, install_fresh, site_packages

ROOT = Path(__file__).resolve().parent.parent


def pinned() -> dict[str, Requirement]:
    """requirements.txt, by canonical name."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {canonicalize_name(r.name): r for r in reqs}


def declared() -> dict[str, Requirement]:
    """pyproject.toml's dependencies and every extra's, by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, names)}


def test_pyproject_declares_exactly_the_pinned_requirements_with_ranges_starting_at_the_pins():
    pins, ranges = pinned(), declared()
    assert set(pins) == set(ranges), f"only in requirements.txt: {set(pins) - set(ranges)}, only in pyproject.toml: {set(ranges) - set(pins)}"
    for name, pin in pins.items():
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        spec = ranges[name].specifier
        assert spec.contains(version, prereleases=True), f"{name}: the pin {version} is outside pyproject's {spec}"
        assert {s.operator for s in spec} == {">=", "<"}, f"{name}: give pyproject a floor and a ceiling, not {spec}"
        assert next(s.version for s in spec if s.operator == ">=") == version, f"{name}: the floor is not the pin {version}"
        assert ranges[name].extras == pin.extras, name
    postgres = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["postgres"]
    assert [Requirement(r).name for r in postgres] == ["psycopg"]


def test_every_package_of_the_checkout_is_in_the_distribution():
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} == found, "list the new package in pyproject.toml"
    assert set(PACKAGES) == found, "and in tests/package_support.py"


def test_a_fresh_virtualenv_gets_an_exoclaw_command_that_serves_and_chats(tmp_path):
    import setuptools

    assert Version(setuptools.__version__) >= Version("70.1"), (
        f"setuptools {setuptools.__version__} cannot build a wheel by itself: `make install-dev` installs "
        "requirements-dev.txt's")
    venv = install_fresh(tmp_path)
    installed = site_packages(venv)
    for needed in ("exoclaw/templates/chat.html", "exoclaw/templates/admin/base_site.html",
                   "exoclaw/static/exoclaw/chat.js", "exoclaw/examples/exoclaw.toml", "sandbox/plugins/calc.wasm",
                   "agents/migrations/0001_initial.py", "routing/templates/admin/routing/binding/try_routing.html"):
        assert (installed / needed).is_file(), f"the package lacks {needed}"

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EXOCLAW_", "REDIS_", "SURREALDB_", "DJANGO_", "PYTHON", "XDG_")) and k != "DATABASE_URL"}
    env |= {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
    exoclaw = venv / "bin" / "exoclaw"

    def run(*args):
        return subprocess.run([exoclaw, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    where = subprocess.run([venv / "bin" / "python", "-c", "import exoclaw; print(exoclaw.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    ours, others = helped.stdout.split("exoclaw's commands:")[1].split("Django's and Channels' commands")
    listed = set(re.findall(r"^  (\w+) ", ours, re.M)) | set(re.findall(r"\w+", others.split(":", 1)[1]))
    wanted = {"serve", "worker", "chat", "doctor", "runplugin", "loadconfig", "dumpconfig", "createtoken", "migrate"}
    assert wanted <= listed, f"exoclaw --help does not list {wanted - listed}:\n{helped.stdout}"
    var_dir = home / ".local" / "share" / "exoclaw"
    assert f"Files: {var_dir}" in helped.stdout
    assert "usage: exoclaw serve" in run("serve", "--help").stdout
    assert run("--version").stdout.startswith(f"exoclaw {exoclaw_version} (Django 5.2")

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([exoclaw, "serve", "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, log, timeout=180)
        url = f"ws://127.0.0.1:{port}/ws"
        said = run("chat", "--url", url, "--agent", "demo", "--message", "hello from an installed exoclaw")
        assert said.returncode == 0, said.stderr
        assert said.stdout == "hello from an installed exoclaw\n"
        calc = run("chat", "--url", url, "--message", '/tool calc {"expr": "6*7"}')
        assert calc.returncode == 0 and "42" in calc.stdout, calc.stdout + calc.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert b"<title>exoclaw chat</title>" in page.read()  # the template ships with the package
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/exoclaw/chat.js", timeout=30) as script:
            assert script.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "a fresh database, setting it up first" in text and "created superuser 'admin'" in text, text
    assert "lost it? exoclaw changepassword admin" in text, "the first start names the installed command"
    assert (var_dir / "exoclaw.sqlite3").is_file()
    # The example config ships with the package and finds the sample plugins it names from there.
    example = run("loadconfig", "--example", "--check")
    assert example.returncode == 0 and "plugins: would create 0, would update 2" in example.stdout, example.stdout + example.stderr
    doctor = run("doctor")
    assert doctor.returncode == 0 and "HIGH" not in doctor.stdout, doctor.stdout + doctor.stderr
