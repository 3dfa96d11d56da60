"""The full thermal description (jaxion.thermal.full): whole periodic lattice plus ion, physical units.

Each number is checked against an independent route: the spring stencil against the dynamical
matrix in Fourier space, the forces against autodiff of the total energy, the interaction energy along a fast straight path against a brute-force minimum-image sum
over every site of the box, energy conservation against Verlet's dt^2 law, momentum against exact
conservation, the T = 0 trajectory against the dimensionless full-lattice method (jaxion.full via
jaxion.simulate) after a unit conversion, and the finite-size scales against the dispersion.
Boxes are L = 6 (the smallest the default 6 Å stencil and jaxion.full's box check allow), runs
are a few hundred steps.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion
from jaxion import units
from jaxion.brillouin import periodic_grid
from jaxion.lattice import SimpleCubic
from jaxion.potentials import Gaussian
from jaxion.simulation import FiniteBoxWarning
from jaxion.system import System
from jaxion.thermal.full import (
    MAX_PHASE_PER_STEP,
    FullThermalDynamics,
    finite_size,
    run_full_thermal,
    warn_finite_size,
)
from jaxion.thermal.model import MEV, IonInFramework, follow_up_model
from jaxion.thermal.modes import thermal_modes
from jaxion.thermal.neighbours import NeighbourSites

L = 6
SPACING = 3.0


@pytest.fixture(scope="module")
def yukawa():
    """The follow-up paper's model (Yukawa u0 = 4000 meV Å, 6 Å smooth cut-off) in a 6^3 box."""
    return FullThermalDynamics(follow_up_model(4000.0, size=L))


def random_lattice(dynamics, seed, displacement=0.15, velocity=3.0):
    """A simple random lattice state (white noise), Å and Å/ps."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    shape = dynamics.lattice_shape
    return displacement * jax.random.normal(k1, shape), velocity * jax.random.normal(k2, shape)


def test_spring_force_is_the_dynamical_matrix_in_fourier_space(yukawa):
    """The roll stencil equals -m D(q) u(q) mode by mode (numpy FFT, D from lattice.dynamical_matrix)."""
    u, _ = random_lattice(yukawa, 4)
    lattice = yukawa.model.lattice
    q = periodic_grid(L, 3)  # FFT order, as numpy.fft.fftn
    dynamical = np.asarray(lattice.dynamical_matrix(q)).reshape(L, L, L, 3, 3)
    modes = np.fft.fftn(np.asarray(u), axes=(0, 1, 2))
    expected = np.fft.ifftn(-float(lattice.mass) * np.einsum("...ij,...j->...i", dynamical, modes), axes=(0, 1, 2))
    force = np.asarray(jax.jit(lambda u: yukawa.spring_force(u))(u))
    assert np.max(np.abs(expected.imag)) < 1e-10
    assert np.max(np.abs(force - expected.real)) < 1e-12 * np.max(np.abs(force))


def test_forces_are_minus_the_gradient_of_the_energy(yukawa):
    """The stencil plus scattered pair forces equal -grad of energy() by autodiff (roll and
    gather transposed by JAX), to rounding; the ion sits near a box corner so the stencil wraps."""
    u, _ = random_lattice(yukawa, 0)
    q = (u, jnp.array([-0.7, 17.2, 8.1]))

    def potential(q):
        rest = (jnp.zeros_like(q[0]), jnp.zeros(3))
        return yukawa.energy((q, rest))

    gradient, force = jax.jit(lambda q: (jax.grad(potential)(q), yukawa.forces(q)))(q)
    scale = float(jnp.max(jnp.abs(force[0])))
    assert np.max(np.abs(force[0] + gradient[0])) < 1e-12 * scale
    np.testing.assert_allclose(force[1], -gradient[1], atol=1e-12 * scale)
    assert float(jnp.max(jnp.abs(force[1]))) > 1.0  # the ion is pushed: the test is not vacuous


@pytest.fixture(scope="module")
def ensemble(yukawa):
    """Two states run as one vmapped batch at 4 fs for 0.4 ps and at 2 fs for 0.2 ps (the same
    numbers of steps and saves, and dt is traced: one compile): [0] a 300 K classical thermal
    lattice (jaxion.thermal.modes) with the ion at the cell centre at a thermal speed, [1] a random
    white-noise lattice with a faster ion."""
    modes = thermal_modes(yukawa.model.lattice, L, 300.0, jax.random.key(3))
    states = [
        yukawa.thermal_state(jnp.full(3, 1.5), jnp.array([3.0, -4.0, 2.0]), modes),
        yukawa.initial_state(jnp.full(3, 1.5), jnp.array([6.0, 0.0, 0.0]), *random_lattice(yukawa, 10)),
    ]
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    coarse = jax.vmap(lambda s: run_full_thermal(yukawa, s, 0.4, 0.004, save_every=5))(batch)
    fine = jax.vmap(lambda s: run_full_thermal(yukawa, s, 0.2, 0.002, save_every=5))(batch)
    return states, coarse, fine


def test_energy_error_scales_as_dt_squared(ensemble):
    """Verlet's energy error is bounded and O(dt^2). Over the same 0.2 ps window, halving dt
    (4 fs -> 2 fs) divides the largest |E(t) - E(0)| by 4 (measured 4.06 for the thermal state;
    3.3-4.7 accepted); at 4 fs (the follow-up uses 5 fs) the relative drift over 0.4 ps of the
    thermal state is below 2e-4 (measured 9.9e-5, set by the lattice's highest modes,
    omega dt = 0.13)."""
    _, coarse, fine = ensemble
    assert bool(jnp.all(coarse.finite)) and bool(jnp.all(fine.finite))
    np.testing.assert_allclose(coarse.ts[0, :11], fine.ts[0, ::2], atol=1e-15)
    assert float(coarse.energy_drift[0] / abs(coarse.energy[0, 0])) < 2e-4
    for i in range(2):
        energy0 = float(coarse.energy[i, 0])
        windows = (coarse.energy[i, :11], fine.energy[i, ::2])  # t = 0, 0.02, ..., 0.2 ps
        errors = [np.max(np.abs(np.asarray(energy) - energy0)) for energy in windows]
        assert 3.3 < errors[0] / errors[1] < 4.7


def test_momentum_is_conserved_by_a_fast_ion_crossing_cells_and_the_box(yukawa):
    """An ion at 100 Å/ps through a random lattice crosses cell faces on all three axes, and the
    planes x = 0 and y = 0 where the lattice indices wrap (the periodic boundary); the total
    momentum (ion + lattice) stays constant to rounding (measured 2e-13 meV ps/Å, 3e-15 of the
    ion's), and the energy error stays bounded (2.6e-3 relative at 4 fs, from close passes; 6e-4
    at 2 fs)."""
    u, v = random_lattice(yukawa, 1)
    direction = jnp.array([-0.399, -0.41, 0.82])
    velocity = 100.0 * direction / jnp.linalg.norm(direction)
    state = yukawa.initial_state(jnp.array([1.94, 1.11, 1.43]), velocity, u, v)
    run = run_full_thermal(yukawa, state, 0.4, 0.004, save_every=5)
    cells = np.floor(np.asarray(run.positions) / SPACING).astype(int)
    assert all(len(set(cells[:, axis])) >= 3 for axis in range(3))
    assert np.min(cells[:, 0]) < 0 and np.min(cells[:, 1]) < 0
    p0, p1 = yukawa.momentum(state), yukawa.momentum(run.final_state)
    ion_momentum = float(yukawa.model.ion_mass * jnp.linalg.norm(velocity))
    assert float(jnp.max(jnp.abs(p1 - p0))) < 1e-11 * ion_momentum
    assert float(run.energy_drift / abs(run.energy[0])) < 1e-2


def brute_force_interaction(model, position, u):
    """``U(R, u)`` summed over every site of the box at its minimum image (numpy, no stencil)."""
    size, a = model.size, float(model.lattice.spacing)
    cells = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    separation = a * cells - np.asarray(position)
    separation -= size * a * np.round(separation / (size * a))
    separation += np.asarray(u).reshape(-1, 3)
    distance = np.linalg.norm(separation, axis=-1)
    weights = np.asarray(model.neighbours.weights(jnp.asarray(distance)))
    return float(np.sum(weights * np.asarray(model.potential(jnp.asarray(separation)))))


def test_fast_ion_sees_a_continuous_interaction_energy(yukawa):
    """Straight path at constant velocity (9 cell-face crossings, 1.4 boxes along z) through a
    displaced lattice: the description's interaction energy equals the brute-force minimum-image
    sum over all 216 sites (1e-12 relative), and at every cell crossing (where the stencil is
    re-selected) the values 1e-9 Å either side differ by no more than the slope allows."""
    model = yukawa.model
    u, _ = random_lattice(yukawa, 2, displacement=0.2)

    def interaction(position):
        return model.interaction(position, u[yukawa.site_index(position)])

    @jax.jit
    def energies_and_slopes(points, direction):
        return jax.vmap(interaction)(points), jax.vmap(jax.grad(interaction))(points) @ direction

    start, step = np.array([1.89, 1.15, 1.58]), np.array([0.1, 0.07, 1.0]) * 0.5
    direction = step / np.linalg.norm(step)
    points = start + np.arange(50)[:, None] * step
    values = np.asarray(energies_and_slopes(jnp.asarray(points), direction)[0])
    reference = np.array([brute_force_interaction(model, p, u) for p in points])
    np.testing.assert_allclose(values, reference, rtol=1e-12, atol=1e-12 * np.max(np.abs(reference)))
    # where the path crosses the planes x, y or z = multiple of a (the stencil is re-selected)
    crossings = []
    for axis in range(3):
        for plane in np.arange(np.ceil(points[0, axis] / SPACING), np.floor(points[-1, axis] / SPACING) + 1):
            crossings.append(start + (plane * SPACING - start[axis]) / step[axis] * step)
    crossings = np.array(crossings)
    assert len(crossings) >= 8
    eps = 1e-9
    padded = np.zeros((50, 3)) + start  # the shape of `points`: no second compile
    padded[: 2 * len(crossings)] = np.concatenate([crossings - eps * direction, crossings + eps * direction])
    energy, slope = (np.asarray(x)[: 2 * len(crossings)] for x in energies_and_slopes(jnp.asarray(padded), direction))
    before, after = np.split(energy, 2)
    jump = np.abs(after - before)
    slope = np.maximum(*np.split(np.abs(slope), 2))
    assert np.all(jump <= 2 * eps * slope * 1.01 + 1e-12 * np.max(np.abs(values)))


def test_zero_temperature_matches_the_dimensionless_full_lattice():
    """T = 0, framework at rest, 8 corner sites, Gaussian pair potential (1000 meV, 1.2 Å): the
    ion oscillating about its cell centre follows jaxion.simulate(method="full") for the same
    system in the paper's units (K = k1, m, l = sqrt(hbar / m Omega), hbar Omega, periods). With the
    same integrator (velocity Verlet) at two step sizes (10 fs and 5 fs) the two are equal to
    rounding (1e-12 Å; measured ~1e-15): the forces, units and lattice agree exactly, and the
    integrator's own error (against a 4th-order Blanes-Moan reference at 0.5 fs: 1.7e-3 Å at 10 fs,
    4.2e-4 Å at 5 fs over 1 ps; benchmarks/bench_thermal_full.py) is the same on both sides."""
    k1, k2, mass, ion_mass, phi0, width = 520.0, 170.0, 3.5, 0.7, 1000.0, 1.2
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=SPACING, mass=mass)
    corners8 = NeighbourSites.cell_corners(SPACING, size=L)
    model = IonInFramework(lattice, Gaussian(phi0, width), ion_mass, neighbours=corners8)
    dynamics = FullThermalDynamics(model)
    position, velocity = jnp.array([1.6, 1.45, 1.58]), jnp.array([2.0, 1.0, -1.5])
    state = dynamics.initial_state(position, velocity)
    t1 = 1.0

    unit = units.UnitSystem(mass * MEV, k1 / 1000.0)  # amu, eV/Å^2
    corners = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    system = System(
        SimpleCubic(k1=1.0, k2=k2 / k1, spacing=SPACING / unit.length, mass=1.0),
        Gaussian(unit.from_mev(phi0), width / unit.length),
        sites=corners,
        mass=ion_mass / mass,
    )

    def reference(dt, duration):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sound returning; Verlet's energy error (as ours)
            trajectory = jaxion.simulate(
                system, position / unit.length, unit.from_angstrom_per_ps(velocity), float(unit.from_ps(duration)),
                method="full", size=L, dt=float(unit.from_ps(dt)), solver="verlet", n_save=11,
            )
        return np.asarray(trajectory.ts) * float(unit.period), np.asarray(trajectory.position) * float(unit.length), \
            np.asarray(trajectory.energy) * float(unit.energy)

    # the two step sizes over 1 ps and 0.5 ps: the same numbers of steps and saves (one compile each side)
    coarse = run_full_thermal(dynamics, state, t1, 0.01, save_every=10)
    fine = run_full_thermal(dynamics, state, t1 / 2, 0.005, save_every=10)
    for run, dt, duration in ((coarse, 0.01, t1), (fine, 0.005, t1 / 2)):
        ts, positions, energy = reference(dt, duration)
        np.testing.assert_allclose(ts, run.ts, atol=1e-14)
        assert np.max(np.abs(positions - np.asarray(run.positions))) < 1e-12
        np.testing.assert_allclose(energy, run.energy, rtol=1e-12)
    # Verlet's error is O(dt^2): the two step sizes differ by 3/4 of the coarse one's error
    difference = np.max(np.abs(np.asarray(coarse.positions[:6]) - np.asarray(fine.positions[::2])))
    assert 5e-4 < difference < 1.5e-3
    excursion = np.max(np.abs(np.asarray(coarse.positions) - SPACING / 2))
    assert 0.05 < excursion < 0.5  # it oscillates, inside its cell


def test_ensembles_vmap_over_states(yukawa, ensemble):
    """jax.vmap over initial states gives each state's own run (to rounding)."""
    states, coarse, _ = ensemble
    assert coarse.positions.shape == (2, 21, 3) and coarse.trajectory.energy.shape == (2, 21)
    for i, state in enumerate(states):
        single = run_full_thermal(yukawa, state, 0.4, 0.004, save_every=5)  # compiled by the momentum test
        np.testing.assert_allclose(coarse.positions[i], single.positions, rtol=0, atol=1e-12)
        np.testing.assert_allclose(coarse.energy[i], single.energy, rtol=1e-13)
    assert not np.allclose(coarse.positions[0], coarse.positions[1])


def test_finite_size_scales_follow_the_dispersion(yukawa):
    """Crossing time L a / v_max with v_max the [100] longitudinal speed (the fastest for these
    springs), read off the dispersion omega(q) = (v / a) 2 sin(q / 2) of that branch rather than
    the long-wave tensor; the field's spatial period L a; a warning for runs that outlast the
    crossing."""
    lattice = yukawa.model.lattice
    q = 0.1
    slope = float(jnp.max(lattice.frequencies(jnp.array([[q, 0.0, 0.0]])))) * SPACING / (2 * np.sin(q / 2))
    assert slope == pytest.approx(SPACING * np.sqrt((520.0 + 2 * 170.0) / 3.5), rel=1e-12)
    scales = finite_size(yukawa)
    assert scales.box_length == pytest.approx(L * SPACING)
    assert scales.crossing_time == pytest.approx(L * SPACING / slope, rel=1e-12)
    assert scales.slowest_crossing_time > scales.crossing_time
    with pytest.warns(FiniteBoxWarning, match="cross"):
        warn_finite_size(yukawa, 2.0 * scales.crossing_time)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_finite_size(yukawa, 0.5 * scales.crossing_time, travel=0.5 * scales.box_length)


def test_bad_inputs_raise_value_errors(yukawa):
    state = yukawa.initial_state(jnp.full(3, 1.5), jnp.zeros(3))
    omega = max(yukawa.highest_frequency(), yukawa.well_frequency())
    too_large = 1.01 * MAX_PHASE_PER_STEP / omega
    with pytest.raises(ValueError, match="dt = .* too large.*rad/ps"):
        run_full_thermal(yukawa, state, 1.0, too_large)
    with pytest.raises(ValueError, match="dt = .* too large"):  # checked at trace time under jit
        jax.jit(lambda s: run_full_thermal(yukawa, s, 1.0, too_large).energy)(state)
    with pytest.raises(ValueError, match="smaller than the neighbour stencil"):
        follow_up_model(4000.0, size=4)
    with pytest.raises(ValueError, match="bonds"):
        FullThermalDynamics(follow_up_model(4000.0, neighbours=NeighbourSites.cell_corners(SPACING, size=2)))
    with pytest.raises(ValueError, match="periodic box"):
        FullThermalDynamics(follow_up_model(4000.0))
    bad = jnp.zeros(yukawa.lattice_shape).at[1, 2, 3, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="lattice displacements must be finite"):
        yukawa.initial_state(jnp.full(3, 1.5), jnp.zeros(3), bad)
    (u, position), (v, _) = state
    with pytest.raises(ValueError, match="ion velocity must be finite"):
        run_full_thermal(yukawa, ((u, position), (v, jnp.array([0.0, jnp.nan, 0.0]))), 0.1, 0.004)
    with pytest.raises(ValueError, match="lattice velocities"):
        yukawa.initial_state(jnp.full(3, 1.5), jnp.zeros(3), None, jnp.zeros((L, L, L)))
