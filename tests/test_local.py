"""The time-local method (Eq. 26): the softening coefficient c settled against an exact static
relaxation of a finite lattice, the relaxation itself against a brute-force energy minimisation,
low-speed losses against Eq. 23, and the energy bookkeeping of the drag."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion.lattice import SimpleCubic
from jaxion.dissipation import loss_low_speed
from jaxion.local import LocalDynamics, simulate
from jaxion.potentials import Gaussian
from jaxion.simulation import simulate as simulate_any
from jaxion.simulation import single_pass
from jaxion.system import System

LATTICE = SimpleCubic()  # k1 = 15, k2 = 5, spacing 2 (the paper's Sec. IV framework)
SITES = [(0, 0, 0), (0, 0, 1), (1, 0, 0)]
ION = jnp.array([0.7, 0.4, 1.2])  # a generic point near the sites (no symmetry hides an error)
SIZE = 6


def _relax_with_green(system, green, sigma, iterations=8):
    """Exact static relaxation of the interacting sites, ``rho_S = -G grad_rho Phi(rho_S, sigma)``.

    On a harmonic lattice the springs give ``V rho = f`` with forces ``f`` only on the interacting
    sites (``f = -grad_rho Phi``), so ``rho = V^+ f`` everywhere and, restricted to the sites,
    ``rho_S = G_SS f_S(rho_S)``: a closed equation for the ``3S`` unknowns, solved by Newton.
    """
    n = len(system.sites)

    def residual(rho):
        return rho - jnp.einsum("abij,bj->ai", green, system.force_on_sites(rho, sigma))

    @jax.jit
    def newton_step(rho):
        jacobian = jax.jacfwd(residual)(rho).reshape(3 * n, 3 * n)
        return rho - jnp.linalg.solve(jacobian, residual(rho).reshape(-1)).reshape(n, 3)

    rho = jnp.zeros((n, 3))
    for _ in range(iterations):
        rho = newton_step(rho)
    return rho


def _spring_matrix(size):
    """Dense force-constant matrix ``(3 L^3, 3 L^3)`` of a periodic simple-cubic block, assembled
    bond by bond in real space (central springs ``k (u . (rho_n - rho_{n+b}))^2 / 2``: blocks
    ``+k u u^T`` on the two diagonal and ``-k u u^T`` on the two off-diagonal positions),
    independently of ``Lattice``'s Fourier-space dynamical matrix."""
    bonds = [((1, 0, 0), 15.0), ((0, 1, 0), 15.0), ((0, 0, 1), 15.0)]
    bonds += [(b, 5.0) for b in [(1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)]]
    cells = np.stack(np.unravel_index(np.arange(size**3), (size,) * 3), axis=-1)
    matrix = np.zeros((size**3, 3, size**3, 3))
    for b, k in bonds:
        u = np.array(b, dtype=float) / np.linalg.norm(b)
        block = k * np.outer(u, u)
        neighbours = np.ravel_multi_index(((cells + b) % size).T, (size,) * 3)
        for i, j, sign in ((np.arange(size**3), np.arange(size**3), 1), (neighbours, neighbours, 1),
                           (np.arange(size**3), neighbours, -1), (neighbours, np.arange(size**3), -1)):
            np.add.at(matrix, (i, slice(None), j), sign * block)
    return matrix.reshape(3 * size**3, 3 * size**3)


def test_static_relaxation_matches_total_energy_minimum():
    # The closed site equation rho_S = -G grad_rho Phi(rho_S) (finite periodic G from the mode
    # sum) against a brute-force route: minimise springs + interaction over all 3 L^3 = 648
    # displacements of an L = 6 block (dense Hessian, Newton), holding the centre of mass fixed
    # as G's removed zero modes do. Both are exact, so they agree to round-off (1e-9 relative
    # allows for the conditioning of the 648 x 648 solve).
    system = System(LATTICE, Gaussian(0.4, 1.0), sites=SITES, mass=(1.0, 1.0, 1.0))
    rho_sites = _relax_with_green(system, LATTICE.green_function(np.array(SITES), size=SIZE), ION)

    index = np.array(SITES) % SIZE
    n = 3 * SIZE**3
    springs = _spring_matrix(SIZE)
    rows = (np.ravel_multi_index(index.T, (SIZE,) * 3)[:, None] * 3 + np.arange(3)).reshape(-1)  # site dofs
    uniform = np.tile(np.eye(3), (SIZE**3, 1)) / np.sqrt(SIZE**3)  # (n, 3) orthonormal translations
    projector = np.eye(n) - uniform @ uniform.T

    site_gradient = jax.jit(lambda rho: jax.grad(system.interaction)(rho.reshape(-1, 3), ION).reshape(-1))
    site_hessian = jax.jit(lambda rho: jax.hessian(system.interaction)(rho.reshape(-1, 3), ION).reshape(rho.size, -1))

    def gradient(flat):
        g = springs @ flat
        g[rows] += np.asarray(site_gradient(flat[rows]))
        return projector @ g

    flat = np.zeros(n)
    for _ in range(6):
        curvature = springs.copy()
        curvature[np.ix_(rows, rows)] += np.asarray(site_hessian(flat[rows]))
        flat = flat - np.linalg.solve(projector @ curvature @ projector + uniform @ uniform.T, gradient(flat))
    assert np.max(np.abs(gradient(flat))) < 1e-12
    brute = flat[rows].reshape(-1, 3)
    np.testing.assert_allclose(brute, rho_sites, rtol=1e-9, atol=1e-9 * np.max(np.abs(brute)))


def test_softening_coefficient_is_one_half():
    # Envelope theorem: the force on a slowly moving ion is -grad_sigma Phi(rho*(sigma), sigma) with
    # the framework statically relaxed; expanding the relaxed energy, Phi_eff = Phi(0) - c g^T G g
    # reproduces it up to O(Phi0^3) only for c = 1/2. Halving Phi0 must then shrink the c = 1/2
    # force error 8-fold (O(Phi0^3)), the c = 1 error only 4-fold (O(Phi0^2)); measured ratios are
    # 7.99 and 4.01 at Phi0 = 0.2 -> 0.1 (we allow +-10 %). At Phi0 = 0.1 the c = 1/2 error is
    # 2e-6 of the force, the c = 1 one 4e-4 (as large as leaving the softening out, with the
    # opposite sign): c = 1 over-softens by exactly the amount c = 0 under-softens.
    green = LATTICE.green_function(np.array(SITES), size=SIZE)
    errors = {0.5: [], 1.0: []}
    for phi0 in (0.2, 0.1):
        system = System(LATTICE, Gaussian(phi0, 1.0), sites=SITES, mass=(1.0, 1.0, 1.0))
        exact = system.force_on_ion(_relax_with_green(system, green, ION), ION)
        for c in errors:
            dynamics = LocalDynamics(system, c=c, drag=False, size=SIZE)
            errors[c].append(float(jnp.linalg.norm(-jax.grad(dynamics.effective_potential)(ION) - exact)))
    assert errors[0.5][0] / errors[0.5][1] == pytest.approx(8.0, rel=0.1)
    assert errors[1.0][0] / errors[1.0][1] == pytest.approx(4.0, rel=0.1)
    assert errors[0.5][1] < 0.01 * errors[1.0][1]


def _soft_system(phi0):
    """A framework 1000x softer in k (recoil matrix ~0.56, 1000x the paper's) so the drag loss is
    large next to the solver's error on the kinetic energy; one interacting site."""
    lattice = SimpleCubic(k1=0.015, k2=0.005)
    return System(lattice, Gaussian(phi0, 1.0), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))


def test_low_speed_loss_is_the_drag_work():
    # Single passes (drag on, softening off) at v0 = 2 and 4. Three routes to the loss:
    #  (a) the simulation's kinetic-energy difference;
    #  (b) the drag work integral sigma'^T H M H sigma' dtau along the saved path (Simpson, 4001
    #      points; an independent quadrature of the same physics): measured 1.4e-7 and 2.0e-7
    #      relative (solver error on a loss 1e-5 of the kinetic energy); we allow 1e-6;
    #  (c) jx.loss_low_speed (Eq. 23 on a straight line at constant speed, v0 int (H M H)_zz dz):
    #      the true speed differs by ~Phi0 / (2 KE) = 0.1 % (v0 = 2, less at v0 = 4); measured
    #      -0.06 % and -0.015 % (the 1/v0^2 scaling of that correction); we allow 0.2 %, and the
    #      same for loss / v0 being constant (3D drag; measured ratio 2.0009).
    phi0 = 1e-4
    system = _soft_system(phi0)
    speeds = jnp.array([2.0, 4.0])
    result = single_pass(system, speeds, start=(0.5, 0.0), method="local", softening=False, rtol=1e-12,
                         atol=1e-14, n_save=4001)
    trajectory = result.trajectory
    assert np.all(np.asarray(trajectory.position_final[:, 2]) >= 7.0)  # stopped at the end of the crossing step

    dynamics = LocalDynamics(system, softening=False)
    rate = jax.jit(jax.vmap(jax.vmap(dynamics.dissipation_rate)))
    ok = np.isfinite(np.asarray(trajectory.ts))
    power = np.where(ok, rate(jnp.where(ok[..., None], trajectory.position, 0.0),
                              jnp.where(ok[..., None], trajectory.velocity, 0.0)), 0.0)
    from scipy.integrate import simpson

    for k in range(2):
        n = int(np.sum(ok[k]))
        n -= 1 - n % 2  # odd number of points for Simpson; the tail beyond carries < 1e-20 power
        work = simpson(power[k, :n], x=np.asarray(trajectory.ts[k, :n]))
        assert float(result.loss[k]) == pytest.approx(work, rel=1e-6)

    np.testing.assert_allclose(result.loss, loss_low_speed(system, speeds, (0.5, 0.0)), rtol=2e-3)
    np.testing.assert_allclose(result.loss[1] / result.loss[0], 2.0, rtol=2e-3)


@functools.cache
def _trapped(drag, mass=(np.inf, np.inf, 1.0), offset=(0.0, 0.0), size=8, t1=3.0, n_save=3001):
    """The Fig. 6 ion (8 sites in a column, Phi0 = 1, width 1/2, v0 = 7.5 from z = 3.5 alpha),
    softened with a finite periodic lattice's G (cheap to build; the physics is the same)."""
    system = System(LATTICE, Gaussian(1.0, 0.5), sites=[(0, 0, j) for j in range(8)], mass=mass)
    trajectory = simulate(system, jnp.array([*offset, 7.0]), jnp.array([0.0, 0.0, 7.5]), t1, size=size,
                          drag=drag, rtol=1e-11, atol=1e-12, n_save=n_save)
    return system, trajectory


def test_energy_balance_under_drag():
    # d/dtau (KE + Phi_eff) = -sigma'^T H M H sigma': the energy drop over 3 periods (several
    # bounces) against the cumulative trapezoid integral of the dissipation rate on 3001 points.
    # Trapezoid error ~ dt^2 |P''| T / 12 (estimate 2e-5 relative; measured 3.2e-6 of the 0.18
    # dissipated); we allow 2e-5 relative.
    system, trajectory = _trapped(drag=True)
    dynamics = LocalDynamics(system, size=8)
    power = jax.jit(jax.vmap(dynamics.dissipation_rate))(trajectory.position, trajectory.velocity)
    ts = np.asarray(trajectory.ts)
    dissipated = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(ts) * (power[1:] + power[:-1]))])
    drop = np.asarray(trajectory.energy[0] - trajectory.energy)
    assert dissipated[-1] > 0.05  # the drag matters on this scale
    np.testing.assert_allclose(drop, dissipated, atol=2e-5 * dissipated[-1])


def test_energy_conserved_without_drag():
    # No drag: KE + Phi_eff is a constant of motion; with rtol 1e-11 the drift over 3 periods
    # (~3 bounces; measured 1.5e-10) stays below 1e-8 of the energy.
    _, trajectory = _trapped(drag=False)
    energy = np.asarray(trajectory.energy)
    assert np.max(np.abs(energy - energy[0])) < 1e-8 * abs(energy[0])
    assert np.ptp(np.asarray(trajectory.position[:, 2])) > 1.0  # it did move


def test_pinned_axis_stays_fixed():
    # mu_x = inf: the x coordinate and velocity never change although the force has an x part
    # (the ion starts off the column of sites); y, with finite mass, is pushed away.
    _, trajectory = _trapped(drag=True, mass=(np.inf, 1.0, 1.0), offset=(0.3, 0.2))
    assert np.all(np.asarray(trajectory.position[:, 0]) == 0.3)
    assert np.all(np.asarray(trajectory.velocity[:, 0]) == 0.0)
    assert np.ptp(np.asarray(trajectory.position[:, 1])) > 1e-2


def test_fixed_step_matches_adaptive():
    # Paper's fixed step dt = 1e-3 (5th-order Tsit5: local error ~ (w dt)^6) against adaptive
    # rtol 1e-11 on one period of the trapped run: agreement to 1e-6 in position.
    system, reference = _trapped(drag=True)
    fixed = simulate(system, jnp.array([0.0, 0.0, 7.0]), jnp.array([0.0, 0.0, 7.5]), 1.0, size=8, dt=1e-3, n_save=1001)
    np.testing.assert_allclose(fixed.position, reference.position[:1001], atol=1e-6)


def test_unstable_framework_rejected():
    # A bump of height 20 and width 1/2 centred on the ion: the site feels curvature -Phi0 / width^2
    # = -80, far beyond the relaxed site
    # stiffness 1/G_00 ~ 31: the relaxed framework has a negative mode, and Eq. 26 is meaningless.
    system = System(LATTICE, Gaussian(20.0, 0.5), sites=[(0, 0, 0)])
    with pytest.raises(ValueError, match="unstable"):
        simulate(system, jnp.zeros(3), jnp.array([0.0, 0.0, 1.0]), 1.0, size=8)


def test_bad_options_rejected():
    system = System(LATTICE, Gaussian(0.01, 1.0), sites=[(0, 0, 0)])
    with pytest.raises(ValueError, match="solver"):
        simulate(system, jnp.zeros(3), jnp.ones(3), 1.0, size=8, solver="euler")
    with pytest.raises(ValueError, match="size"):
        simulate(system, jnp.zeros(3), jnp.ones(3), 1.0, size=1)


def test_local_tracks_full_lattice_and_prefers_c_one_half():
    # Fig. 6 ion on a periodic L = 12 lattice, first half period (one bounce off the upper
    # barrier and back): the full lattice (Blanes-Moan, dt = 0.005; 3e-9 from dt = 0.0025) against
    # Eq. 26 with the matching finite-L Green's function. Measured RMS z differences (amplitude
    # ~0.8): c = 1/2 0.008, c = 1 0.051. The time-local description has O(v / c_sound) and
    # retardation errors, so we allow 0.02 for c = 1/2, and require c = 1 to be > 3x worse.
    system = System(LATTICE, Gaussian(1.0, 0.5), sites=[(0, 0, j) for j in range(8)])
    start, kick = jnp.array([0.0, 0.0, 7.0]), jnp.array([0.0, 0.0, 7.5])
    with pytest.warns(UserWarning, match="sound"):  # sound returns through the small box later on
        full = simulate_any(system, start, kick, 0.5, method="full", size=12, dt=0.005, solver="symplectic", n_save=101)
    rms = {}
    for c in (0.5, 1.0):
        local = simulate(system, start, kick, 0.5, size=12, c=c, rtol=1e-10, atol=1e-12, n_save=101)
        rms[c] = float(np.sqrt(np.mean(np.asarray(local.position[:, 2] - full.position[:, 2]) ** 2)))
    assert rms[0.5] < 0.02
    assert rms[1.0] > 3.0 * rms[0.5]
