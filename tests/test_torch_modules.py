"""Each torch module against its Keras twin: same inputs and weights, same outputs and gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import keras_optlayers.torch as kot  # noqa: E402
from keras_optlayers.layers.csoftmax import CSoftmax  # noqa: E402
from keras_optlayers.layers.csparsemax import CSparsemax  # noqa: E402
from keras_optlayers.layers.ellipsoid_projection import EllipsoidProjection  # noqa: E402
from keras_optlayers.layers.lml import LML  # noqa: E402
from keras_optlayers.layers.optnet_qp import OptNetQP  # noqa: E402
from keras_optlayers.layers.polytope_projection import PolytopeProjection  # noqa: E402
from keras_optlayers.layers.sparsemax import Sparsemax  # noqa: E402

TIGHT_SCS = {"eps": 1e-10, "max_iters": 100_000}


def keras_outputs_and_gradients(layer, inputs, upstream, extra=()):
    """y = layer(x, *extra) and the gradients of sum(y * upstream) wrt x, extra and the weights."""
    tensors = [tf.constant(t) for t in (inputs, *extra)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        y = layer(*tensors)
        loss = tf.reduce_sum(y * upstream)
    weights = {w.name: w for w in layer.trainable_weights}
    grads = tape.gradient(loss, [*tensors, *weights.values()])
    return y.numpy(), [g.numpy() for g in grads[: len(tensors)]], dict(zip(weights, (g.numpy() for g in grads[len(tensors):])))


def torch_outputs_and_gradients(module, inputs, upstream, extra=()):
    tensors = [torch.tensor(t, requires_grad=True) for t in (inputs, *extra)]
    y = module(*tensors)
    (y * torch.from_numpy(upstream)).sum().backward()
    weights = {name: p.grad.numpy() for name, p in module.named_parameters() if p.requires_grad}
    return y.detach().numpy(), [t.grad.numpy() for t in tensors], weights


def assert_twins(keras_layer, torch_module, inputs, extra=(), copy_weights=False):
    rng = np.random.default_rng(1)
    upstream = rng.normal(size=inputs.shape)
    if copy_weights:
        keras_layer(tf.constant(inputs))  # build, then take the torch module's weights
        torch_module(torch.from_numpy(inputs))
        for name, parameter in torch_module.named_parameters():
            getattr(keras_layer, name).assign(parameter.detach().numpy())
    y_keras, input_grads_keras, weight_grads_keras = keras_outputs_and_gradients(keras_layer, inputs, upstream, extra)
    y_torch, input_grads_torch, weight_grads_torch = torch_outputs_and_gradients(torch_module, inputs, upstream, extra)
    np.testing.assert_allclose(y_torch, y_keras, atol=1e-6)
    for g_torch, g_keras in zip(input_grads_torch, input_grads_keras):
        np.testing.assert_allclose(g_torch, g_keras, atol=1e-5)
    assert set(weight_grads_torch) == set(weight_grads_keras)
    for name in weight_grads_torch:
        np.testing.assert_allclose(weight_grads_torch[name], weight_grads_keras[name], atol=1e-5, err_msg=name)


X = np.random.default_rng(0).normal(size=(3, 6)) * 2


@pytest.mark.parametrize(
    "keras_layer, torch_module",
    [
        (Sparsemax(), kot.Sparsemax()),
        (CSparsemax(upper=0.3), kot.CSparsemax(upper=0.3)),
        (CSoftmax(upper=0.3), kot.CSoftmax(upper=0.3)),
        (LML(k=2.5), kot.LML(k=2.5)),
    ],
    ids=["sparsemax", "csparsemax", "csoftmax", "lml"],
)
def test_projections_match_keras(keras_layer, torch_module):
    assert_twins(keras_layer, torch_module, X)


def test_projection_along_another_axis_matches_keras():
    x = np.random.default_rng(2).normal(size=(2, 5, 3))
    assert_twins(Sparsemax(axis=1), kot.Sparsemax(axis=1), x)


@pytest.mark.parametrize("keras_class, torch_class", [(CSparsemax, kot.CSparsemax), (CSoftmax, kot.CSoftmax)])
def test_call_time_bounds_match_keras(keras_class, torch_class):
    upper = np.random.default_rng(3).uniform(0.2, 0.5, size=(3, 6))
    assert_twins(keras_class(), torch_class(), X, extra=(upper,))


@pytest.mark.parametrize(
    "keras_layer, torch_module, dim",
    [
        (PolytopeProjection(6, trainable_interior_point=True, solver="SCS", solver_args=TIGHT_SCS),
         kot.PolytopeProjection(6, trainable_interior_point=True, solver="SCS", solver_args=TIGHT_SCS), 3),
        (PolytopeProjection(4, offset="free", solver="SCS", solver_args=TIGHT_SCS),
         kot.PolytopeProjection(4, offset="free", solver="SCS", solver_args=TIGHT_SCS), 2),
        (EllipsoidProjection(solver="SCS", solver_args=TIGHT_SCS),
         kot.EllipsoidProjection(A_initializer="glorot_uniform", z_initializer="ones", solver="SCS",
                                solver_args=TIGHT_SCS), 3),
        (OptNetQP(2, 3, solver="SCS", solver_args=TIGHT_SCS),
         kot.OptNetQP(2, 3, z0_initializer=torch.nn.init.normal_, solver="SCS", solver_args=TIGHT_SCS), 5),
    ],
    ids=["polytope", "polytope-free", "ellipsoid", "optnet"],
)
def test_learnable_modules_match_keras(keras_layer, torch_module, dim):
    torch.manual_seed(0)
    inputs = np.random.default_rng(4).normal(size=(4, dim)) * 2
    assert_twins(keras_layer, torch_module, inputs, copy_weights=True)


def test_learnable_module_weights_mirror_keras():
    module = kot.OptNetQP(num_eq=2, num_ineq=5)
    module(torch.zeros(7, 10))
    layer = OptNetQP(num_eq=2, num_ineq=5, solver="SCS")
    layer.build((None, 10))
    torch_shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    keras_shapes = {w.name: tuple(w.shape) for w in layer.weights}
    assert torch_shapes == keras_shapes
    np.testing.assert_array_equal(module.L.detach().numpy(), np.eye(10))
    polytope = kot.PolytopeProjection(10)
    y = polytope(torch.randn(5, 2))
    G, h = polytope.polytope()
    assert not polytope.z0.requires_grad
    assert torch.all(y @ G.T <= h + 1e-3)


@pytest.mark.parametrize(
    "make, inputs",
    [
        (lambda S, CS, CM, L: S(axis="last"), ()),
        (lambda S, CS, CM, L: S(axis=2), (np.zeros((2, 3)),)),
        (lambda S, CS, CM, L: CS(upper=0.2), (np.zeros(4),)),
        (lambda S, CS, CM, L: CS(upper=-1.0), ()),
        (lambda S, CS, CM, L: CM(upper=[0.5]), ()),
        (lambda S, CS, CM, L: CM(upper=0.5), (np.zeros(4), np.full(4, 0.5))),
        (lambda S, CS, CM, L: CM(), (np.zeros(4),)),
        (lambda S, CS, CM, L: CS(), (np.zeros(4), np.full(4, 0.2))),
        (lambda S, CS, CM, L: CS(), (np.zeros(4), np.array([0.5, 0.5, 0.5, -0.1]))),
        (lambda S, CS, CM, L: L(k=4), (np.zeros(4),)),
        (lambda S, CS, CM, L: L(k="2"), ()),
    ],
)
def test_projection_errors_match_keras(make, inputs):
    """The same mistake raises the same ValueError text in both front ends."""
    with pytest.raises(ValueError) as keras_info:
        layer = make(Sparsemax, CSparsemax, CSoftmax, LML)
        layer(*[tf.constant(t) for t in inputs])
    with pytest.raises(ValueError) as torch_info:
        module = make(kot.Sparsemax, kot.CSparsemax, kot.CSoftmax, kot.LML)
        module(*[torch.tensor(t) for t in inputs])
    # Keras wraps call-time errors with the call's arguments; the message is inside.
    assert str(torch_info.value) in str(keras_info.value)


def test_learnable_construction_errors_match_keras():
    cases = [
        lambda P, E, O: P(0),
        lambda P, E, O: P(3, offset="inside"),
        lambda P, E, O: P(3, slack=0.0),
        lambda P, E, O: P(3, trainable_interior_point=1),
        lambda P, E, O: O(-1, 2),
        lambda P, E, O: O(1, 2, eps=0),
    ]
    for make in cases:
        with pytest.raises(ValueError) as keras_info:
            make(PolytopeProjection, EllipsoidProjection, OptNetQP)
        with pytest.raises(ValueError) as torch_info:
            make(kot.PolytopeProjection, kot.EllipsoidProjection, kot.OptNetQP)
        assert str(torch_info.value) == str(keras_info.value)


def test_infeasible_free_polytope_raises_solver_error():
    module = kot.PolytopeProjection(2, offset="free")
    module(torch.zeros(1, 1))
    with torch.no_grad():
        module.G.copy_(torch.tensor([[1.0], [-1.0]]))
        module.h.copy_(torch.tensor([-1.0, -1.0]))  # y <= -1 and y >= 1
    with pytest.raises(kot.SolverError, match="batch indices"):
        module(torch.zeros(3, 1))
