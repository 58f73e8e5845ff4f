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


def test_torch_front_end_imports_without_tensorflow_or_keras():
    code = textwrap.dedent(
        """
        import sys

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"tensorflow", "keras"}:
                    raise ImportError(f"blocked: {name}")

        sys.meta_path.insert(0, Blocked())
        import cvxpy as cp
        import torch
        import keras_optlayers.torch as kot

        x, y = cp.Parameter(2), cp.Variable(2)
        layer = kot.CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0]), [x], [y])
        print(layer(torch.tensor([-1.0, 2.0]))[0].tolist(), "tensorflow" in sys.modules)
        """
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    values, tf_loaded = result.stdout.strip().rsplit(" ", 1)
    assert tf_loaded == "False"
    assert [round(v, 4) for v in eval(values)] == [0.0, 2.0]


def test_keras_names_need_the_tensorflow_backend():
    code = "import os; os.environ['KERAS_BACKEND'] = 'torch'\nfrom keras_optlayers import Sparsemax"
    result = run(code)
    assert result.returncode != 0
    assert "KERAS_BACKEND='torch'" in result.stderr and "tensorflow" in result.stderr


def test_modules_are_not_shadowed_by_functions():
    """A function exported by a package never rebinds its module's name."""
    code = textwrap.dedent(
        """
        from unittest import mock
        import keras_optlayers.ops as ops
        import keras_optlayers.ops._lml as lml_module
        import keras_optlayers.solvers.qp as qp
        import keras_optlayers.solvers.qp.solve as solve_module
        assert callable(ops.lml) and callable(qp.qp_solve)
        assert lml_module.MAX_ITERATIONS > 0
        with mock.patch("keras_optlayers.ops._lml.MAX_ITERATIONS", 3):
            assert lml_module.MAX_ITERATIONS == 3
        assert solve_module.qp_solve is qp.qp_solve
        print("ok")
        """
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_lazy_exports_match_all():
    import keras_optlayers

    assert set(keras_optlayers.__all__) == set(keras_optlayers._LAZY_EXPORTS) | {"SolverError", "solver_errors", "__version__"}
    for name in keras_optlayers.__all__:
        assert getattr(keras_optlayers, name) is not None
