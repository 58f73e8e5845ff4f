"""Static checks with the settings in pyproject.toml: mypy and ruff.

mypy checks the package's own annotations (`[tool.mypy]`: the untyped
third-party libraries are read as Any, and the few known annotation errors are
silenced per module and error code, each named there). ruff checks the rule
families the code passes (`[tool.ruff]`). Both run as the user would run
them, from the repository root, so a new error anywhere fails the suite.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_tool(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_mypy_passes_on_the_package(tmp_path):
    # A fresh cache: nothing is written into the checkout, nothing stale is read.
    result = run_tool("mypy", "--cache-dir", str(tmp_path / "mypy_cache"))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout


def test_mypy_checks_the_package_annotations(tmp_path):
    """The configuration does check: a wrong annotation in a package-like module is reported."""
    package = tmp_path / "keras_optlayers_probe"
    package.mkdir()
    (package / "__init__.py").write_text("def half(x: int) -> str:\n    return x // 2\n")
    result = run_tool("mypy", "--config-file", str(REPO_ROOT / "pyproject.toml"), "--cache-dir",
                      str(tmp_path / "mypy_cache"), str(package))
    assert result.returncode == 1, result.stdout
    assert 'Incompatible return value type (got "int", expected "str")' in result.stdout


def test_ruff_passes_on_the_package_tests_recipes_and_benchmarks():
    result = run_tool("ruff", "check", "--no-cache", "keras_optlayers", "tests", "recipes", "benchmarks", timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
