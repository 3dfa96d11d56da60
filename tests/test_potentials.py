"""Pair potentials: values against their formulas, sums, user functions, autodiff derivatives
against central finite differences, and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion.potentials import Gaussian, PairFunction, PairSum, Yukawa

RNG = np.random.default_rng(1)
R = RNG.normal(size=(4, 5, 3))
DISTANCE = np.linalg.norm(R, axis=-1)


def test_gaussian_and_yukawa_values():
    # the formulas of physics.md section 1 evaluated with numpy: rounding only
    gaussian = Gaussian(0.01, 0.7)
    assert gaussian(R).shape == (4, 5)
    np.testing.assert_allclose(gaussian(R), 0.01 * np.exp(-(DISTANCE**2) / (2 * 0.7**2)), rtol=1e-14)
    yukawa = Yukawa(2.0, 1.5)
    np.testing.assert_allclose(yukawa(R), 2.0 * np.exp(-DISTANCE / 1.5) / DISTANCE, rtol=1e-14)
    assert float(gaussian.range) == 0.7 and float(yukawa.range) == 1.5


def test_pair_sum_and_pair_function():
    gaussian, yukawa = Gaussian(0.3, 0.5), Yukawa(1.0, 2.0)
    total = gaussian + yukawa
    assert isinstance(total, PairSum)
    np.testing.assert_allclose(total(R), gaussian(R) + yukawa(R), rtol=1e-14)
    assert float(total.range) == 2.0
    nested = total + Gaussian(-0.1, 3.0)
    np.testing.assert_allclose(nested(R), total(R) - 0.1 * np.exp(-(DISTANCE**2) / 18), rtol=1e-14)
    assert float(nested.range) == 3.0
    # a user function with the Gaussian's formula reproduces the built-in one, values and gradients
    user = PairFunction(lambda r, p: p["phi0"] * jnp.exp(-r @ r / (2 * p["width"] ** 2)), 0.5, {"phi0": 0.3, "width": 0.5})
    np.testing.assert_allclose(user(R), gaussian(R), rtol=1e-14)
    r = jnp.array([0.2, -0.4, 0.9])
    np.testing.assert_allclose(jax.grad(user)(r), jax.grad(gaussian)(r), rtol=1e-13)
    # gradient with respect to the user's params equals d/dphi0 of the Gaussian = Gaussian / phi0
    dparams = jax.grad(lambda p: user.fn(r, p))({"phi0": 0.3, "width": 0.5})
    np.testing.assert_allclose(dparams["phi0"], gaussian(r) / 0.3, rtol=1e-13)
    # a plain r -> phi(r) callable (no params) is accepted too
    plain = PairFunction(lambda r: 0.3 * jnp.exp(-r @ r / (2 * 0.5**2)), 0.5)
    np.testing.assert_allclose(plain(R), gaussian(R), rtol=1e-14)
    with pytest.raises(TypeError):
        gaussian + 1.0


def central_gradient(f, x, h):
    eye = np.eye(3)
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye])


@pytest.mark.parametrize("potential", [Gaussian(0.7, 0.8), Yukawa(1.3, 0.9), Gaussian(0.2, 1.0) + Yukawa(-0.5, 2.0)])
def test_autodiff_derivatives_match_finite_differences(potential):
    # central differences, step h = 1e-4 at |r| ~ 1: truncation h^2 f''' / 6 ~ 1e-9, rounding
    # eps f / h ~ 1e-12; tolerance 1e-7 relative to the largest entry
    h = 1e-4
    r = np.array([0.4, -0.7, 0.5])
    value, gradient = jax.jit(lambda x: potential(x)), jax.jit(jax.grad(lambda x: potential(x)))
    f = lambda x: float(value(jnp.asarray(x)))
    grad = np.asarray(gradient(jnp.asarray(r)))
    fd_grad = central_gradient(f, r, h)
    np.testing.assert_allclose(grad, fd_grad, atol=1e-7 * np.max(np.abs(fd_grad)))
    hessian = np.asarray(jax.jit(jax.hessian(lambda x: potential(x)))(jnp.asarray(r)))
    g = lambda x: np.asarray(gradient(jnp.asarray(x)))
    fd_hessian = central_gradient(g, r, h)
    np.testing.assert_allclose(hessian, fd_hessian, atol=1e-7 * np.max(np.abs(fd_hessian)))
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-14)


def test_gaussian_derivatives_closed_form():
    # grad = -phi r / w^2, Hessian = phi (r r^T / w^4 - 1 / w^2)
    gaussian = Gaussian(0.9, 0.6)
    r = jnp.array([0.3, 0.1, -0.5])
    phi = float(gaussian(r))
    np.testing.assert_allclose(jax.grad(gaussian)(r), -phi * r / 0.36, rtol=1e-13)
    np.testing.assert_allclose(jax.hessian(gaussian)(r), phi * (np.outer(r, r) / 0.36**2 - np.eye(3) / 0.36), rtol=1e-12)


def test_jit_and_vmap_over_parameters():
    widths = jnp.array([0.5, 1.0, 2.0])
    r = jnp.array([0.3, 0.2, 0.1])
    batched = jax.vmap(lambda w: Gaussian(1.0, w)(r))(widths)
    np.testing.assert_allclose(batched, np.exp(-0.14 / (2 * np.asarray(widths) ** 2)), rtol=1e-14)
    jitted = jax.jit(lambda phi0: Yukawa(phi0, 1.0)(r))(2.0)
    np.testing.assert_allclose(jitted, Yukawa(2.0, 1.0)(r), rtol=1e-15)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Gaussian(1.0, 0.0), "width"),
        (lambda: Gaussian(1.0, -1.0), "width"),
        (lambda: Gaussian(np.nan, 1.0), "phi0"),
        (lambda: Gaussian(np.inf, 1.0), "phi0"),
        (lambda: Gaussian([1.0, 2.0], 1.0), "phi0"),
        (lambda: Yukawa(1.0, 0.0), "screening"),
        (lambda: Yukawa(np.nan, 1.0), "u0"),
        (lambda: PairFunction(lambda r, p: 0.0, 0.0), "length"),
        (lambda: PairFunction(3.0, 1.0), "callable"),
        (lambda: PairSum(()), "PairSum"),
    ],
)
def test_bad_input_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()
