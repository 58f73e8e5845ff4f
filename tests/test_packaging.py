"""The package as others get it: sdist and wheel, declared dependencies, CI.

- The sdist and the wheel carry the license and the `py.typed` marker, and
  the sdist no tests (they need the repository around them; see MANIFEST.in).
- The version lives in `keras_optlayers/_version.py` only.
- Every third-party module the package, the tests and the recipes import is
  declared in pyproject, and the environment the suite runs in satisfies the
  declared ranges (so a bound nobody tests cannot creep in).
- `.ci/run` runs the README's test command and fails when pytest fails or
  collects nothing.
"""

from __future__ import annotations

import ast
import email
import functools
import importlib.metadata
import os
import pathlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping

import pytest
from packaging.requirements import Requirement

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# Imported by the package but declared only in extras, on purpose, with the
# distribution each extra brings: TensorFlow comes as `tensorflow` or
# `tensorflow-cpu` (pip would install both if the core requirements named
# one); torch only serves the optional torch front end.
OPTIONAL_BY_DESIGN = {
    "tensorflow": {"cpu": "tensorflow-cpu", "tensorflow": "tensorflow"},
    "torch": {"torch": "torch"},
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str, core: bool = True) -> dict[str, Requirement]:
    """Requirements by normalized name: the core ones and those of `extras`."""
    strings = list(PROJECT["dependencies"]) if core else []
    for extra in extras:
        strings += PROJECT["optional-dependencies"][extra]
    requirements = [Requirement(s) for s in strings]
    return {normalized(r.name): r for r in requirements if normalized(r.name) != "keras-optlayers"}


def third_party_imports(directory: pathlib.Path) -> dict[str, set[str]]:
    """Top-level modules imported under `directory` that are neither stdlib nor local, with the files."""
    local = {path.stem for path in directory.iterdir() if path.suffix == ".py" or path.is_dir()}
    local |= {directory.name, "keras_optlayers", "recipes"}
    found: dict[str, set[str]] = {}
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


@functools.cache
def installed_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> the installed distributions providing it (a scan of all of them: once)."""
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The installed distributions providing `module` (its own name if none is installed)."""
    return {normalized(d) for d in installed_distributions().get(module, [module])}


def undeclared(imports: dict[str, set[str]], requirements: dict[str, Requirement]) -> dict[str, set[str]]:
    return {m: files for m, files in imports.items() if not distributions_of(m) & requirements.keys()}


# -- dependencies -----------------------------------------------------------------


def test_every_third_party_import_of_the_package_is_declared():
    imports = third_party_imports(REPO_ROOT / "keras_optlayers")
    core = {m: f for m, f in imports.items() if m not in OPTIONAL_BY_DESIGN}
    assert not undeclared(core, declared()), "imported by keras_optlayers, not in [project] dependencies"
    for module, extras in OPTIONAL_BY_DESIGN.items():
        assert distributions_of(module) & set(extras.values()), f"{module} is installed from an undeclared source"
        for extra, distribution in extras.items():
            assert distribution in declared(extra, core=False), f"{distribution} is not in the [{extra}] extra"


def test_every_third_party_import_of_the_tests_and_recipes_is_declared():
    tests = third_party_imports(REPO_ROOT / "tests")
    assert not undeclared(tests, declared("cpu", "torch", "test")), "imported by tests/, not in the test extra"
    recipes = third_party_imports(REPO_ROOT / "recipes")
    assert not undeclared(recipes, declared("cpu", "recipes")), "imported by recipes/, not in the recipes extra"


def test_the_test_environment_is_inside_the_declared_ranges():
    """Each declared bound holds for what the suite runs against (not on torch: optional)."""
    outside = {}
    for name, requirement in declared("test").items():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            outside[name] = "not installed"
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            outside[name] = f"{version} not in {requirement.specifier}"
    assert not outside


def test_diffcp_range_starts_where_the_host_solver_works():
    """The host solver imports `diffcp._diffcp` and calls `diffcp.solve_internal`.

    `solve_internal` is exported from 1.1.0 on (1.0.24 and 1.0.25 were
    tagged, never released). 1.1.0 and 1.1.1 import the extension as a
    top-level `_diffcp` that their wheels do not ship, so `import diffcp`
    itself fails; `diffcp._diffcp` arrives in 1.1.2.
    """
    specifier = declared()["diffcp"].specifier
    assert not specifier.contains("1.1.1") and specifier.contains("1.1.2")
    assert not specifier.contains("1.2.0"), "diffcp's private extension may change in a minor release"
    import diffcp
    import diffcp._diffcp as extension

    assert callable(diffcp.solve_internal)
    assert all(hasattr(extension, name) for name in ("M_operator", "dprojection", "lsqr"))


# -- version --------------------------------------------------------------------------


def test_version_lives_in_one_place():
    """pyproject reads `_version.py`; the package re-exports it and writes no version of its own."""
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "keras_optlayers._version.__version__"}
    init = ast.parse((REPO_ROOT / "keras_optlayers" / "__init__.py").read_text())
    literal_versions = [
        node for node in init.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets)
    ]
    assert not literal_versions, "keras_optlayers/__init__.py must import __version__ from _version.py"
    import keras_optlayers
    from keras_optlayers._version import __version__

    assert keras_optlayers.__version__ == __version__


# -- sdist and wheel -----------------------------------------------------------------


def _copy_of_the_source(destination: pathlib.Path) -> pathlib.Path:
    """The checkout without build outputs, so that building leaves the checkout untouched."""
    ignored = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".venv", "output",
                                     ".mypy_cache", ".ruff_cache", ".pytest_cache")
    return pathlib.Path(shutil.copytree(REPO_ROOT, destination, ignore=ignored))


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, pathlib.Path]:
    """The sdist, and the wheel built from the sdist (so the sdist is complete), by the `build` frontend.

    Built from a copy of the checkout, with no isolation (offline: the
    installed setuptools must satisfy [build-system] requires).
    """
    root = tmp_path_factory.mktemp("packaging")
    source = _copy_of_the_source(root / "source")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = (root / "dist").glob("*.tar.gz")
    (wheel,) = (root / "dist").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.slow
def test_sdist_has_the_license_and_py_typed_and_no_tests(distributions):
    with tarfile.open(distributions["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        top = archive.getnames()[0].split("/")[0]
        license_text = archive.extractfile(f"{top}/LICENSE").read().decode()
    assert {"LICENSE", "keras_optlayers/py.typed", "keras_optlayers/_version.py", "pyproject.toml"} <= names
    assert not [name for name in names if name.startswith("tests/")], "the sdist ships tests that cannot run"
    assert license_text == (REPO_ROOT / "LICENSE").read_text()


@pytest.mark.slow
def test_wheel_has_the_license_py_typed_and_metadata(distributions):
    from keras_optlayers._version import __version__

    with zipfile.ZipFile(distributions["wheel"]) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info"))
        metadata = email.message_from_string(archive.read(f"{dist_info}/METADATA").decode())
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode()
    assert "keras_optlayers/py.typed" in names
    assert not [name for name in names if name.startswith("tests/")]
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert license_text == (REPO_ROOT / "LICENSE").read_text()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Version"] == __version__
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL")} >= {"Homepage", "Repository", "Issues"}
    required = {normalized(Requirement(r).name) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert required == set(declared())


@pytest.mark.slow
def test_wheel_installs_and_imports_on_its_own(distributions, tmp_path):
    """Installed into an empty directory, away from the checkout: every module of the checkout imports."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target),
         str(distributions["wheel"])],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    package = REPO_ROOT / "keras_optlayers"
    modules = sorted(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for path in package.rglob("*.py"))
    code = (
        "import importlib, importlib.resources, sys\n"
        f"for name in {modules!r}:\n"
        "    assert importlib.import_module(name).__file__.startswith(sys.argv[1]), name\n"
        "print(importlib.resources.files('keras_optlayers').joinpath('py.typed').is_file())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "True", "py.typed is not where type checkers look"


# -- .ci/run --------------------------------------------------------------------------


def readme_test_commands() -> list[list[str]]:
    """The arguments of each `python` call in the README block that runs the tests (venv set-up left out)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if "pytest" in b]
    commands = [shlex.split(c) for line in block.splitlines() for c in line.split("&&") if c.strip()]
    return [c[1:] for c in commands if c[0] == "python" and "venv" not in c]


def run_ci(tmp_path: pathlib.Path, pip_exit: int = 0, pytest_exit: int = 0) -> tuple[int, list[list[str]], str]:
    """Runs .ci/run with a stand-in `python` first on PATH that logs its arguments."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        f'if [ "$2" = pip ]; then exit {pip_exit}; fi\n'
        f'if [ "$2" = pytest ]; then exit {pytest_exit}; fi\n'
        "exit 99\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO_ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                            timeout=60)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return result.returncode, calls, result.stderr


def test_ci_runs_the_readme_test_command(tmp_path):
    returncode, calls, stderr = run_ci(tmp_path)
    assert returncode == 0, stderr
    assert calls == readme_test_commands()
    assert calls[0][:3] == ["-m", "pip", "install"] and "torch==2.13.0" in calls[0], "torch must come first"


@pytest.mark.parametrize(("pytest_exit", "what"), [(1, "failed tests"), (2, "interrupted"), (5, "no tests collected")])
def test_ci_fails_when_pytest_does(tmp_path, pytest_exit, what):
    returncode, _, stderr = run_ci(tmp_path, pytest_exit=pytest_exit)
    assert returncode != 0, what


def test_ci_stops_when_an_install_fails(tmp_path):
    returncode, calls, _ = run_ci(tmp_path, pip_exit=1)
    assert returncode != 0
    assert not [call for call in calls if "pytest" in call]
