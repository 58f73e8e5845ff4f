"""The layering rules: a framework-free core, torch optional, TF checked."""

import subprocess
import sys
import textwrap

def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_core_and_host_solver_import_no_framework():
    code = textwrap.dedent(
        """
        import importlib.util, pathlib, sys, types

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"tensorflow", "torch", "keras"}:
                    raise ImportError(f"framework import: {name}")

        spec = importlib.util.find_spec("keras_optlayers")
        package = types.ModuleType("keras_optlayers")  # skip the package __init__
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["keras_optlayers"] = package
        sys.meta_path.insert(0, Blocked())

        import keras_optlayers.core.checks
        import keras_optlayers.core.compiler
        import keras_optlayers.core.problems as problems
        import keras_optlayers.solvers.cone_solver
        problems.csoftmax_problem(3)
        problems.polytope_projection_problem(2, 3)
        print("ok")
        """
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_package_import_does_not_import_torch():
    result = run("import sys, keras_optlayers; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
