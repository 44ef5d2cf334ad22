"""The documentation stays runnable from a fresh clone: links stay inside the repository and every
command line runs manage.py with the virtualenv's Python that `make run` creates."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def test_links_and_references_stay_inside_the_repository():
    for doc in DOCS + [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]:
        text = doc.read_text()
        assert not re.search(r"\.\./shared|shared/NOTES", text), f"{doc.name} points at a folder no clone has"
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
            assert path.exists(), f"{doc.name} links to {target}, which does not exist"


def test_every_manage_py_command_line_uses_the_virtualenv_python():
    for doc in DOCS:
        for block in code_blocks(doc.read_text()):
            for line in block.splitlines():
                if re.search(r"(^|\s)(\S*python3?) manage\.py", line):
                    assert re.search(r"\.venv/bin/python manage\.py", line), f"{doc.name}: {line.strip()}"


def deploy_env() -> dict[str, str]:
    """The environment file docs/deploy.md shows ("Configure")."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = next(b for b in code_blocks(text) if b.startswith("DATABASE_URL="))
    return dict(line.split("=", 1) for line in block.splitlines() if line.strip() and not line.startswith("#"))


def test_the_deploy_environment_names_only_real_settings_and_passes_the_production_check(tmp_path):
    from tests.test_settings import check_deploy, settings_variables

    env = deploy_env()
    assert set(env) <= settings_variables(), set(env) - settings_variables()
    env |= {"EXOCLAW_VAR_DIR": str(tmp_path / "var"), "MEDIA_ROOT": str(tmp_path / "media")}
    done = check_deploy(tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_the_deploy_guide_runs_only_commands_that_exist():
    from django.core.management import get_commands

    text = (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"manage\.py\", \"(\w+)\"|manage\.py (\w+)", text))
    commands = {a or b for a, b in named}
    assert commands >= {"serve", "runworker", "migrate", "bootstrap", "surreal_migrate", "prunesessions"}
    assert commands <= set(get_commands()), commands - set(get_commands())
    assert "make install" in text and "\ninstall:" in (ROOT / "Makefile").read_text()
    assert "sandbox.native" not in text and not (ROOT / "sandbox" / "native").exists(), "no native part to build"
