"""System: interaction energy, forces (Newton's third law), Hessian, kinetic energy, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
import jaxion as jx
from jaxion.lattice import Chain, SimpleCubic
from jaxion.potentials import Gaussian, Yukawa
from jaxion.system import System

RNG = np.random.default_rng(2)
CUBIC = SimpleCubic()
SITES = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]  # a face of the cube (Fig. 5)
POTENTIAL = Gaussian(0.01, 1.0) + Yukawa(0.05, 1.5)
SYSTEM = System(CUBIC, POTENTIAL, SITES, mass=(np.inf, np.inf, 1.0))
RHO = 0.1 * RNG.normal(size=(4, 3))
SIGMA = np.array([0.8, 1.1, -1.3])


def test_interaction_is_sum_over_sites():
    # Phi = sum_j phi(x_j + rho_j - sigma) with x_j = alpha * cell (alpha = 2), written out
    expected = sum(float(POTENTIAL(jnp.asarray(2.0 * np.array(c) + r - SIGMA))) for c, r in zip(SITES, RHO))
    np.testing.assert_allclose(SYSTEM.interaction(RHO, SIGMA), expected, rtol=1e-14)
    np.testing.assert_allclose(SYSTEM.site_positions(), 2.0 * np.array(SITES))
    np.testing.assert_array_equal(SYSTEM.site_cells, SITES)
    chain = System(Chain(spacing=1.5), Gaussian(1.0, 0.5), [(0,), (2,)])
    np.testing.assert_allclose(chain.site_positions(), [[0, 0, 0], [0, 0, 3.0]])


def fd_gradient(f, x, h):
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.shape + np.shape(f(x)))
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        out[index] = (np.asarray(f(x + step)) - np.asarray(f(x - step))) / (2 * h)
    return out


def test_forces_and_hessian_match_finite_differences():
    # central differences with h = 1e-4: truncation ~ h^2 |phi'''| / 6 ~ 1e-10 of the force scale,
    # rounding ~ eps |Phi| / h ~ 1e-14; tolerance 1e-7 of the largest entry
    h = 1e-4
    interaction = jax.jit(lambda rho, sigma: SYSTEM.interaction(rho, sigma))
    force_on_ion = jax.jit(lambda rho, sigma: SYSTEM.force_on_ion(rho, sigma))
    phi = lambda rho, sigma: float(interaction(jnp.asarray(rho), jnp.asarray(sigma)))
    on_ion = np.asarray(SYSTEM.force_on_ion(RHO, SIGMA))
    expected = -fd_gradient(lambda s: phi(RHO, s), SIGMA, h)
    np.testing.assert_allclose(on_ion, expected, atol=1e-7 * np.max(np.abs(expected)))
    on_sites = np.asarray(jax.jit(lambda rho, sigma: SYSTEM.force_on_sites(rho, sigma))(RHO, SIGMA))
    assert on_sites.shape == (4, 3)
    expected = -fd_gradient(lambda r: phi(r, SIGMA), RHO, h)
    np.testing.assert_allclose(on_sites, expected, atol=1e-7 * np.max(np.abs(expected)))
    # H = -d(force on ion at rho = 0)/d sigma
    hessian = np.asarray(jax.jit(lambda sigma: SYSTEM.hessian(sigma))(SIGMA))
    zero = np.zeros((4, 3))
    expected = -fd_gradient(lambda s: np.asarray(force_on_ion(zero, jnp.asarray(s))), SIGMA, h)
    np.testing.assert_allclose(hessian, expected, atol=1e-7 * np.max(np.abs(expected)))
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-15)


def test_newtons_third_law():
    # Phi depends on x_j + rho_j - sigma only: sum of forces on the sites = - force on the ion
    for rho, sigma in [(RHO, SIGMA), (0 * RHO, np.array([1.0, 1.0, 0.2]))]:
        total = np.sum(np.asarray(SYSTEM.force_on_sites(rho, sigma)), axis=0)
        np.testing.assert_allclose(total, -np.asarray(SYSTEM.force_on_ion(rho, sigma)), atol=1e-16)


def test_static_potential_and_energies():
    sigma = RNG.normal(size=(2, 5, 3))
    landscape = np.asarray(SYSTEM.static_potential(sigma))
    assert landscape.shape == (2, 5)
    np.testing.assert_allclose(landscape[1, 3], SYSTEM.interaction(np.zeros((4, 3)), sigma[1, 3]), rtol=1e-14)
    np.testing.assert_array_equal(SYSTEM.inverse_mass, [0.0, 0.0, 1.0])
    # ion kinetic energy mu v^2 / 8 pi^2 over mobile axes only
    v = np.array([3.0, -2.0, 5.0])
    np.testing.assert_allclose(SYSTEM.ion_kinetic_energy(v), 25.0 / (8 * np.pi**2), rtol=1e-15)
    heavy = System(CUBIC, POTENTIAL, SITES, mass=(2.0, 4.0, 8.0))
    np.testing.assert_allclose(heavy.inverse_mass, [0.5, 0.25, 0.125])
    np.testing.assert_allclose(heavy.ion_kinetic_energy(v), (18 + 16 + 200) / (8 * np.pi**2), rtol=1e-15)
    np.testing.assert_allclose(
        heavy.total_energy(RHO, SIGMA, v), heavy.ion_kinetic_energy(v) + heavy.interaction(RHO, SIGMA), rtol=1e-15
    )
    default = System(Chain(), Gaussian(1.0, 1.0))
    assert default.sites == ((0,),)
    np.testing.assert_array_equal(default.mass, [np.inf, np.inf, 1.0])


def test_jit_and_vmap_construction():
    # constructing inside jit / vmap: tracer fields skip the checks; values match eager
    def energy(phi0, mu):
        system = System(SimpleCubic(), Gaussian(phi0, 1.0), SITES, mass=(jnp.inf, jnp.inf, mu))
        return system.interaction(jnp.asarray(RHO), jnp.asarray(SIGMA)) + system.ion_kinetic_energy(jnp.ones(3))

    eager = System(CUBIC, Gaussian(0.3, 1.0), SITES, mass=(np.inf, np.inf, 2.0))
    expected = eager.interaction(RHO, SIGMA) + eager.ion_kinetic_energy(np.ones(3))
    np.testing.assert_allclose(jax.jit(energy)(0.3, 2.0), expected, rtol=1e-14)
    batched = jax.vmap(energy, in_axes=(0, None))(jnp.array([0.3, 0.6]), 2.0)
    np.testing.assert_allclose(batched[0], expected, rtol=1e-14)
    # gradient with respect to phi0 is Phi / phi0 (Phi is linear in phi0)
    grad = jax.grad(energy)(0.3, 2.0)
    np.testing.assert_allclose(grad, eager.interaction(RHO, SIGMA) / 0.3, rtol=1e-13)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mass=(np.inf, np.inf, 0.0)), "ion mass"),
        (dict(mass=(np.inf, np.inf, -1.0)), "ion mass"),
        (dict(mass=np.inf), "infinite on every axis"),
        (dict(mass=(np.nan, 1.0, 1.0)), "ion mass"),
        (dict(mass=(1.0, 1.0)), "ion mass"),
        (dict(sites=[(0, 0)]), "sites"),
        (dict(sites=[(0, 0), (0, 0, 0)]), "sites"),
        (dict(sites=[]), "sites"),
        (dict(sites=[(0, 0, 0), (0, 0, 0)]), "distinct"),
        (dict(sites=[(0.5, 0, 0)]), "integer"),
        (dict(lattice="cubic"), "lattice"),
        (dict(potential=lambda r: r), "potential"),
    ],
)
def test_bad_input_raises(kwargs, message):
    arguments = dict(lattice=CUBIC, potential=Gaussian(1.0, 1.0), sites=[(0, 0, 0)], mass=(np.inf, np.inf, 1.0))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        System(**arguments)


def test_path_through_singular_site_rejected():
    """A Yukawa site on the straight path is an infinite barrier: refused, with the site named."""
    system = jx.System(jx.SimpleCubic(), jx.Yukawa(0.05, 0.5))
    with pytest.raises(ValueError, match="runs through the interacting site"):
        jx.single_pass(system, 3.0, (0.0, 0.0), method="local", dt=0.005)


def test_non_finite_integration_raises():
    """A potential that is NaN near a site (0 * sqrt of a negative number inside |r| < 1, which the
    path crosses for ~100 steps) must give an error naming when it happened, never a NaN loss."""
    bad = jx.PairFunction(lambda r: 0.01 * jnp.exp(-jnp.sum(r**2)) + 0.0 * jnp.sqrt(jnp.sum(r**2) - 1.0), length=0.5)
    system = jx.System(jx.SimpleCubic(), bad)
    with pytest.raises(jx.NonFiniteTrajectoryError, match="non-finite"):
        jx.single_pass(system, 3.0, (0.1, 0.0), method="local", dt=0.005, softening=False)
