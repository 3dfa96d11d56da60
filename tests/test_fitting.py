"""Fitting with optax: recover the parameters that generated synthetic observations.

The independent route is the generating parameters themselves: noise-free data are produced by
the same model at known parameters, and the fit, started elsewhere, must find them.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxion.dissipation import loss_chain_closed_form, loss_perturbative
from jaxion.fitting import fit, fit_multistart, residuals, sample_starts
from jaxion.lattice import Chain, SimpleCubic
from jaxion.potentials import Gaussian
from jaxion.simulation import simulate
from jaxion.system import System

# 8 speeds over a decade and a half: a loss curve spanning 2 decades (log residuals). A multiple of
# the perturbative batch size (4).
SPEEDS = jnp.geomspace(1.0, 30.0, 8)
START = jnp.array([0.5, 0.0])


def springs_system(p):
    return System(SimpleCubic(k1=p["k1"], k2=p["k2"]), Gaussian(0.01, 1.0))


def springs_model(system):
    return loss_perturbative(system, SPEEDS, START, n_radial=12, n_face=8)


def test_recover_springs_from_perturbative_loss_curve():
    truth = {"k1": 15.0, "k2": 5.0}
    target = springs_model(springs_system(truth))
    assert float(target[-1] / target[0]) > 10.0  # spans decades: log residuals are the right scale
    starts = sample_starts(jax.random.key(0), {"k1": (9.0, 25.0), "k2": (3.0, 8.0)}, 3)
    result = fit_multistart(springs_system, springs_model, target, starts, positive=True, max_steps=60)
    # Noise-free data: the minimum is zero at the truth; L-BFGS converges quadratically near it, so
    # a converged fit is exact to ~sqrt(loss); 1e-6 relative leaves room for the stopping rule.
    assert bool(result.converged)
    assert float(result.loss) < 1e-14
    np.testing.assert_allclose([result.params["k1"], result.params["k2"]], [15.0, 5.0], rtol=1e-6)
    # every start reached the same minimum (the problem is well posed on this range)
    assert np.all(np.asarray(result.losses) < 1e-12)
    # the recorded history decreases overall
    history = np.asarray(result.history)[: int(result.n_steps)]
    assert history[-1] < 1e-10 * history[0]


TRAJECTORY_SPACING = 2.0


def trajectory_system(p):
    lattice = SimpleCubic(spacing=TRAJECTORY_SPACING)
    return System(lattice, Gaussian(p["phi0"], p["width"]), mass=(jnp.inf, jnp.inf, 1.0))


def trajectory_model(system):
    # Time-local (Eq. 26) pass at speed 3 through a repulsive Gaussian site, 0.4 off axis; the
    # observation is the ion's velocity along z at 40 times (slowed and re-accelerated near the site).
    trajectory = simulate(system, jnp.array([0.4, 0.0, -3.0]), jnp.array([0.0, 0.0, 3.0]), 2.0, method="local",
                          dt=4e-3, size=4, n_save=40)
    return trajectory.velocity[:, 2]


def test_recover_potential_from_local_trajectory():
    truth = {"phi0": 0.5, "width": 0.6}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = trajectory_model(trajectory_system(truth))
        assert float(jnp.max(target) - jnp.min(target)) > 0.05  # the site visibly changes the velocity
        starts = {"phi0": jnp.array([0.3, 0.8]), "width": jnp.array([0.8, 0.45])}
        result = fit_multistart(trajectory_system, trajectory_model, target, starts, positive=True,
                                residual="absolute", scale=1e-2, max_steps=40, atol=1e-16)
    # Noise-free, same discretisation: the objective reaches 1e-16 (velocities matched to ~1e-10),
    # which pins both parameters to better than 1e-5 relative.
    assert bool(result.converged)
    np.testing.assert_allclose([result.params["phi0"], result.params["width"]], [0.5, 0.6], rtol=1e-5)


def test_adam_and_single_start_fit():
    # Adam, one parameter, a closed-form model: the chain's Eq.-14 loss scales as phi0^2 (second
    # order), so a target 4x the loss at phi0 = 0.01 is produced by phi0 = 0.02 exactly.
    speeds = jnp.geomspace(2.0, 40.0, 8)

    def build(phi0):
        return Chain(), Gaussian(phi0, 1.0)

    def model(pair):
        return loss_chain_closed_form(*pair, speeds, 0.5)

    target = 4.0 * model(build(0.01))
    result = fit(build, model, target, 0.013, positive=True, optimizer="adam", learning_rate=0.05, max_steps=400,
                 gtol=1e-9)
    np.testing.assert_allclose(float(result.params), 0.02, rtol=1e-4)


def test_fitting_input_errors():
    with pytest.raises(ValueError, match="optimizer"):
        fit(springs_system, springs_model, jnp.ones(8), {"k1": 15.0, "k2": 5.0}, optimizer="sgd")
    with pytest.raises(ValueError, match="not parameters"):
        fit(springs_system, springs_model, jnp.ones(8), {"k1": 15.0, "k2": 5.0}, positive=["k3"])
    with pytest.raises(ValueError, match="positive"):
        fit(springs_system, springs_model, jnp.ones(8), {"k1": -15.0, "k2": 5.0}, positive=True)
    with pytest.raises(ValueError, match="shape"):
        residuals(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="residual"):
        residuals(jnp.ones(3), jnp.ones(3), kind="squared")
    with pytest.raises(ValueError, match="low < high"):
        sample_starts(jax.random.key(0), {"k1": (5.0, 1.0)}, 3)
