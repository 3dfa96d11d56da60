"""Gradients of dissipation and trajectories with respect to every material and interaction parameter,
checked against central finite differences of the same (undifferentiated) code.

Every check differentiates ``f(p)`` for a parameter vector ``p`` whose entries build the modules
inside the differentiated function, and compares the logarithmic derivatives ``p_i df/dp_i``
(dimensionless, so parameters of different units compare on one scale) with central
differences ``[f(p + h_i e_i) - f(p - h_i e_i)] / (2 h_i)``, ``h_i = 1e-4 |p_i|``.

Error budget of the finite differences: truncation ``h^2 f''' / 6 ~ 1e-8`` relative for a function
smooth on the scale of its parameters, rounding ``eps |f| / h ~ 1e-12`` relative. Quadratures are
smooth maps of the parameters (fixed nodes; where a rule rescales with the parameters, its
quadrature error is smooth too), so they must agree to ``1e-6``. Trajectories are fixed-step
solves, smooth maps too, except that the stop is the end of the step crossing ``stop_z``: which
step that is changes under a perturbation, moving the end by less than one step at 7 ranges
from the sites, where the force is ``exp(-24.5) ~ 2e-11`` of its peak; the spec's ``1e-3`` is
therefore loose, and entries are compared against ``1e-3`` of the largest one (a component
1000 times smaller than the gradient's scale is only tested to that absolute level).
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxion.dissipation import drag_tensor, loss_chain_closed_form, loss_low_speed, loss_perturbative
from jaxion.response import recoil_matrix
from jaxion.elastic import ElasticContinuum
from jaxion.lattice import Chain, SimpleCubic
from jaxion.potentials import Gaussian, Yukawa
from jaxion.simulation import pass_geometry, simulate
from jaxion.system import System

STEP = 1e-4


def finite_differences(f, p, batched=True):
    """Central differences of ``f: (n,) -> (...)`` at ``p``: ``(..., n)``, all ``2n`` evaluations in one vmap
    (``batched``) or one after another (for functions that need concrete inputs)."""
    h = STEP * jnp.abs(p)
    shifts = jnp.diag(h)
    points = jnp.concatenate([p + shifts, p - shifts])
    values = jax.vmap(f)(points) if batched else jnp.stack([f(x) for x in points])
    n = p.shape[0]
    return jnp.moveaxis((values[:n] - values[n:]) / (2.0 * h.reshape((n,) + (1,) * (values.ndim - 1))), 0, -1)


def assert_gradient(derivative, f, p, rtol, floor=1e-6, jit=True, batched=True):
    """``derivative (..., n)`` against finite differences, as log-derivatives ``p_i df/dp_i``;
    entries below ``floor`` of the largest one are compared at that absolute level."""
    fd = np.asarray(finite_differences(jax.jit(f) if jit else f, p, batched)) * np.asarray(p)
    ad = np.asarray(derivative) * np.asarray(p)
    scale = np.max(np.abs(fd))
    assert scale > 0
    error = np.abs(ad - fd) / np.maximum(np.abs(fd), floor * scale)
    print(f"max relative error {np.max(error):.2e}")
    assert np.all(error < rtol), f"max relative error {np.max(error):.2e}\nAD {ad}\nFD {fd}"
    return float(np.max(error))


def cubic_system(p, sites=((0, 0, 0), (1, 0, 0))):
    """``p = (k1, k2, framework mass, spacing, ion mass, phi0, width)``."""
    k1, k2, mass, spacing, mu, phi0, width = p
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=spacing, mass=mass)
    return System(lattice, Gaussian(phi0, width), sites=list(sites), mass=jnp.stack([jnp.inf, jnp.inf, mu]))


CUBIC = jnp.array([15.0, 5.0, 1.3, 2.0, 1.0, 0.01, 1.0])
START = jnp.array([0.6, 0.3])  # transverse position; two sites at (0,0,0) and (spacing,0,0)


def yukawa_system(p):
    """``p = (k1, u0, screening)``, one site."""
    k1, u0, screening = p
    return System(SimpleCubic(k1=k1), Yukawa(u0, screening))


YUKAWA = jnp.array([15.0, 0.02, 0.8])
YUKAWA_START = jnp.array([0.9, 0.4])  # away from the site: the potential is singular at r = 0


def test_recoil_matrix_gradients():
    # M (Eq. 23) over springs, framework mass and spacing (on which M does not depend: a zero
    # derivative, compared at the floor level), and the continuum L (Eq. 27) over density and
    # cubic constants: jacfwd of the whole (3, 3) matrix.
    def lattice_m(p):
        return recoil_matrix(SimpleCubic(k1=p[0], k2=p[1], mass=p[2], spacing=p[3]))

    p = jnp.array([15.0, 5.0, 1.3, 2.0])
    assert_gradient(jax.jacfwd(lattice_m)(p), lattice_m, p, rtol=1e-6)
    assert np.allclose(np.asarray(jax.jacfwd(lattice_m)(p))[..., 3], 0.0, atol=1e-20)

    def continuum_l(p):
        # a cubic, anisotropic solid (density kg/m^3, constants GPa), scaled to O(1)
        return 1e12 * recoil_matrix(ElasticContinuum(p[0], c11=p[1], c12=p[2], c44=p[3]), n_theta=24, n_phi=48)

    p = jnp.array([3584.0, 297.8, 97.0, 156.3])
    assert_gradient(jax.jacfwd(continuum_l)(p), continuum_l, p, rtol=1e-6)


def test_drag_tensor_gradients():
    # H M H at a point between the two sites: every lattice and Gaussian parameter; Yukawa too.
    sigma = jnp.array([0.6, 0.3, 0.4])
    f = lambda p: drag_tensor(cubic_system(p), sigma)
    assert_gradient(jax.jacfwd(f)(CUBIC), f, CUBIC, rtol=1e-6)
    g = lambda p: drag_tensor(yukawa_system(p), jnp.array([0.9, 0.4, 0.3]))
    assert_gradient(jax.jacfwd(g)(YUKAWA), g, YUKAWA, rtol=1e-6)


def test_low_speed_loss_gradients():
    # Eq. 23 along a straight pass (a Gauss-panel quadrature in z of H M H): all parameters.
    f = lambda p: loss_low_speed(cubic_system(p), 0.5, START, n_panels=24)
    assert_gradient(jax.grad(f)(CUBIC), f, CUBIC, rtol=1e-6)
    g = lambda p: loss_low_speed(yukawa_system(p), 0.5, YUKAWA_START, n_panels=24)
    assert_gradient(jax.grad(g)(YUKAWA), g, YUKAWA, rtol=1e-6)


def test_perturbative_loss_gradients_cubic():
    # Eq. 13 at two speeds (zone rule rescaled with the speed and the spectrum bounds): jacfwd
    # through the Daleckii-Krein branch sum.
    f = lambda p: loss_perturbative(cubic_system(p), jnp.array([2.0, 8.0]), START, n_radial=16, n_face=12,
                                    batch_size=2)
    assert_gradient(jax.jacfwd(f)(CUBIC), f, CUBIC, rtol=1e-6)


def test_perturbative_loss_gradients_yukawa():
    # A tabulated (trapezoid + Hermite) force transform: u0, screening and a spring.
    f = lambda p: loss_perturbative(yukawa_system(p), 3.0, YUKAWA_START, n_radial=16, n_face=12)
    assert_gradient(jax.jacfwd(f)(YUKAWA), f, YUKAWA, rtol=1e-6)


def chain_system(p):
    """``p = (k_par, k_perp, kappa_par, kappa_perp, mass, phi0, width)``, one site, ion along z."""
    k_par, k_perp, kappa_par, kappa_perp, mass, phi0, width = p
    chain = Chain(k_par=k_par, k_perp=k_perp, kappa_par=kappa_par, kappa_perp=kappa_perp, mass=mass)
    return System(chain, Gaussian(phi0, width), sites=[(0,)])


CHAIN = jnp.array([99 / 4, 20.0, 1.0, 1.5, 1.2, 0.01, 1.0])


def test_perturbative_loss_gradients_chain_confinement():
    # The confined chain: derivatives in both confinements and springs. Two independent routes:
    # finite differences of the quadrature, and the derivative of the closed form Eq. 14 (Bessel
    # functions) at the same point; the quadrature converges to the closed form to ~1e-10 relative.
    s = 0.5
    f = lambda p: loss_perturbative(chain_system(p), 4.0, jnp.array([s, 0.0]))
    gradient = jax.jacfwd(f)(CHAIN)
    assert_gradient(gradient, f, CHAIN, rtol=1e-6)

    def closed(p):
        system = chain_system(p)
        return loss_chain_closed_form(system.lattice, system.potential, 4.0, s)

    np.testing.assert_allclose(gradient, jax.grad(closed)(CHAIN), rtol=1e-6, atol=1e-6 * np.max(np.abs(gradient)))


def pass_loss(system, speed, start, method, duration, **options):
    """The single-pass protocol (``jaxion.simulation.single_pass``) with a concrete duration, so
    that it is traceable in the width and the spacing (which move the start and the stop)."""
    position, stop_z = pass_geometry(system, start)
    velocity = jnp.array([0.0, 0.0, 1.0]) * speed
    trajectory = simulate(system, position, velocity, duration, method=method, stop_z=stop_z, **options)
    return system.ion_kinetic_energy(velocity) - system.ion_kinetic_energy(trajectory.velocity_final)


def test_local_single_pass_gradients():
    # Eq. 26 (drag + Born-Oppenheimer softening with the periodic 4^3 Green's function), fixed
    # step, reverse mode (diffrax's checkpointed adjoint) through the event-terminated solve.
    p = CUBIC.at[5].set(0.05).at[6].set(0.5)
    speed = 3.0
    duration = 2.0 * (2 * 7 * 0.5 + 2.0) / speed
    f = lambda q: pass_loss(cubic_system(q), speed, START, "local", duration, dt=2e-3, size=4, n_save=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_gradient(jax.jit(jax.grad(f))(p), f, p, rtol=1e-3, floor=1e-3)


def chain_pass_system(p):
    """``p = (k_par, k_perp, kappa_par, kappa_perp, mass, spacing, ion mass, phi0, width)``, two sites."""
    k_par, k_perp, kappa_par, kappa_perp, mass, spacing, mu, phi0, width = p
    chain = Chain(k_par=k_par, k_perp=k_perp, kappa_par=kappa_par, kappa_perp=kappa_perp, spacing=spacing, mass=mass)
    return System(chain, Gaussian(phi0, width), sites=[(0,), (1,)], mass=jnp.stack([jnp.inf, jnp.inf, mu]))


CHAIN_PASS_LATTICE = (99 / 4, 20.0, 1.0, 1.5, 1.2, 1.0)
CHAIN_PASS = jnp.array(CHAIN_PASS_LATTICE + (1.0, 0.05, 0.5))


def test_full_chain_single_pass_gradients_ion_and_potential():
    # The whole periodic chain (L = 16): ion mass, phi0, width (which moves the start and the stop),
    # under jit. The lattice parameters: test_full_single_pass_gradient_lattice.
    speed = 4.0
    duration = 2.0 * (2 * 7 * 0.5 + 1.0) / speed
    options = dict(size=16, dt=5e-3, n_save=2)

    def f(q):
        p = list(CHAIN_PASS_LATTICE) + [q[0], q[1], q[2]]
        return pass_loss(chain_pass_system(p), speed, jnp.array([0.4, 0.0]), "full", duration, **options)

    p = CHAIN_PASS[6:]
    grad = jax.jit(jax.grad(f))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_gradient(grad(p), f, p, rtol=1e-3, floor=1e-3)


def test_full_single_pass_gradient_lattice():
    # The whole periodic chain (L = 16) differentiated in a spring constant and the framework mass:
    # the guard-rail checks are skipped for traced lattices, the solve itself is differentiable.
    p = jnp.array([99 / 4, 1.2])

    def f(q):
        return pass_loss(chain_pass_system(CHAIN_PASS.at[0].set(q[0]).at[4].set(q[1])), 4.0, jnp.array([0.4, 0.0]),
                         "full", 4.0, size=16, dt=5e-3, n_save=2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_gradient(jax.grad(f)(p), f, p, rtol=1e-3, floor=1e-3, jit=False)


def test_kernel_chain_single_pass_gradients_all_parameters():
    # The kernel form of the periodic chain (L = 16) differentiated in every parameter: springs,
    # confinements and framework mass (through the Chebyshev moments of D(q): no eigenvectors, so the
    # degenerate x, y branches are harmless), spacing, ion mass, phi0 and width. Reverse mode outside
    # jit: the kernel's expansion is sized from the lattice's values, so the finite differences run
    # one after another. Tolerance as for the other single-pass checks (module docstring; measured 3e-7).
    speed = 4.0
    duration = 2.0 * (2 * 7 * 0.5 + 1.0) / speed
    f = lambda p: pass_loss(chain_pass_system(p), speed, jnp.array([0.4, 0.0]), "kernel", duration, size=16,
                            dt=5e-3, n_save=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_gradient(jax.grad(f)(CHAIN_PASS), f, CHAIN_PASS, rtol=1e-3, floor=1e-3, jit=False, batched=False)
