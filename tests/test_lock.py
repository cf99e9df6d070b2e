"""Every install comes from uv.lock: the lock matches pyproject.toml, and nothing installs around it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from uv import find_uv_bin

REPO = Path(__file__).resolve().parents[1]


def uv_lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_uv_bin(), "lock", "--check", "--directory", str(project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_lock_matches_pyproject() -> None:
    result = uv_lock_check(REPO)
    assert result.returncode == 0, f"uv.lock is stale, run `make lock`:\n{result.stderr}"


def test_a_requirement_the_lock_does_not_satisfy_is_caught(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '"msgspec>=0.19",' in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"msgspec>=0.19",', '"msgspec>=99",'))
    result = uv_lock_check(tmp_path)
    assert result.returncode != 0
    assert "msgspec" in result.stderr


def locked_version(name: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (version,) = {p["version"] for p in lock["package"] if p["name"] == name}
    return str(version)


def test_the_bootstrapped_uv_is_the_locked_one_with_hashes() -> None:
    text = (REPO / "tools" / "uv.requirements.txt").read_text()
    assert re.findall(r"^uv==(\S+)", text, re.MULTILINE) == [locked_version("uv")]
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", text)) >= 10  # one per platform wheel


@pytest.mark.parametrize("path", ["Makefile", "Dockerfile", ".ci/run"])
def test_installs_go_through_the_lock(path: str) -> None:
    text = (REPO / path).read_text()
    for line in text.splitlines():
        if "pip install" in line:
            assert "--require-hashes" in line, f"{path}: {line.strip()}"
        if re.search(r"\buv\b.*\bsync\b", line, re.IGNORECASE):
            assert "--locked" in line, f"{path}: {line.strip()}"
    if path != ".ci/run":  # .ci/run installs through `make test`
        assert re.search(r"\buv\)? sync --locked", text, re.IGNORECASE)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(make \w+)\s+#", readme, re.MULTILINE)
    assert "make test" in commands
    ci_commands = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci_commands
