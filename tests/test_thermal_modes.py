"""Thermal normal-mode state (physics.md section 5.1): each check against an independent route.

Exact identities (covariance = k_B T G, equations of motion, energy, FFT = direct sum) are
checked to rounding; sampled ensembles against the exact second moments within a z-score bound
set from the measured sampling error, with a Bonferroni threshold so that the chance of a false
failure over all compared numbers of a test is below 1e-6 (fixed seeds make each run
reproducible). Every statistical test also asserts that its error bar is small enough to detect
the effect it is about (e.g. classical against quantum statistics).

Framework: the follow-up's model system (physics.md 5.6), simple cubic, k1 = 520, k2 = 170
meV/Å^2, a = 3 Å, m = 3.5 meV ps^2/Å^2 (omega from 7 to 31 rad/ps, hbar omega 4.6 to 20.6 meV),
on small periodic lattices L = 4-6.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxion  # noqa: F401  (enables float64)
from jaxion import units
from jaxion._linalg import symmetric_power
from jaxion.brillouin import periodic_grid
from jaxion.lattice import Chain, SimpleCubic
from jaxion.units import BOLTZMANN_MEV, HBAR_MEV_PS
from jaxion.thermal.modes import (
    ThermalModes,
    displacement_covariance,
    thermal_modes,
    velocity_covariance,
)

LATTICE = SimpleCubic(k1=520.0, k2=170.0, spacing=3.0, mass=3.5)
CONFINED = SimpleCubic(k1=520.0, k2=170.0, spacing=3.0, mass=3.5, confinement=(0.0, 0.0, 60.0))
MASS = 3.5
CELLS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 3, -1], [7, -5, 4]])


def frequency_range(lattice, size):
    omega = np.asarray(lattice.frequencies(periodic_grid(size, 3)[1:]))
    return omega.min(), omega.max()


def bonferroni(count, probability=1e-6):
    """Two-sided z threshold keeping the chance that any of ``count`` Gaussian statistics exceeds
    it below ``probability``."""
    return stats.norm.isf(probability / (2.0 * count))


def real_space_forces(lattice, u):
    """``F_n = -sum_b Phi_b (2 u_n - u_{n+b} - u_{n-b}) - kappa u_n`` over the bond list, by jnp.roll."""
    force = -lattice.confinement * u
    for b, phi in zip(lattice.offsets, lattice.bond_tensors()):
        forward = jnp.roll(u, shift=tuple(-c for c in b), axis=(0, 1, 2))  # u_{n+b}
        backward = jnp.roll(u, shift=b, axis=(0, 1, 2))  # u_{n-b}
        force = force - (2.0 * u - forward - backward) @ phi.T
    return force


def real_space_energy(lattice, u, v):
    """Kinetic ``m |v|^2 / 2`` plus spring ``(u_n - u_{n+b})^T Phi_b (u_n - u_{n+b}) / 2`` per bond
    (each bond once) plus on-site ``kappa u^2 / 2``, in meV."""
    energy = 0.5 * lattice.mass * jnp.sum(v**2) + 0.5 * jnp.sum(lattice.confinement * u**2)
    for b, phi in zip(lattice.offsets, lattice.bond_tensors()):
        stretch = u - jnp.roll(u, shift=tuple(-c for c in b), axis=(0, 1, 2))
        energy = energy + 0.5 * jnp.einsum("...i,ij,...j->", stretch, phi, stretch)
    return energy


def real_space_force_constants(lattice, separations):
    """Block ``K(d)`` of the force-constant matrix for cell separations ``d (S, S, 3)`` (no wrap)."""
    out = np.zeros(separations.shape[:2] + (3, 3))
    out[np.all(separations == 0, axis=-1)] += np.diag(np.asarray(lattice.confinement))
    for b, phi in zip(lattice.offsets, np.asarray(lattice.bond_tensors())):
        out[np.all(separations == 0, axis=-1)] += 2.0 * phi
        for sign in (1, -1):
            out[np.all(separations == sign * np.array(b), axis=-1)] -= phi
    return out


# ------------------------------------------------------------------ constants and exact moments


def test_constants_from_units():
    # k_B and hbar in meV units from CODATA (exact SI values; amu cancels in both)
    assert BOLTZMANN_MEV == pytest.approx(1.380649e-23 / 1.602176634e-22, rel=1e-12)
    assert HBAR_MEV_PS == pytest.approx(6.62607015e-34 / (2 * np.pi) / 1.602176634e-22 / 1e-12, rel=1e-12)
    assert units.EV / 1000 == pytest.approx(9.6485, rel=1e-4)  # 1 meV ps^2/Å^2 = 9.6485 amu


@pytest.mark.parametrize("lattice, size", [(LATTICE, 4), (LATTICE, 6), (CONFINED, 5)])
def test_classical_covariance_is_kT_times_green_function(lattice, size):
    # mode sum (eigenpairs, direct phases) vs the lattice's FFT of the adjugate inverse of D(q),
    # including the pseudo-inverse convention at Gamma (confined z axis kept, translations out).
    # Both are exact finite sums; D is well conditioned (omega_max/omega_min ~ 5), so they differ
    # by rounding ~1e-15 (measured 3e-16); 1e-10 is a safe bound.
    temperature = 300.0
    covariance = np.asarray(displacement_covariance(lattice, size, temperature, CELLS))
    green = BOLTZMANN_MEV * temperature * np.asarray(lattice.green_function(CELLS, size=size))
    assert covariance.shape == (5, 5, 3, 3)
    assert np.max(np.abs(covariance - green)) <= 1e-10 * np.max(np.abs(green))


@pytest.mark.parametrize("lattice, size", [(LATTICE, 4), (CONFINED, 5)])
def test_classical_velocity_covariance_closed_form(lattice, size):
    # (k_B T / (m N)) sum_{q,s} eta eta^T cos(q.d), translations out: completeness gives
    # (k_B T / m) (delta_ab 1 - P_free / N), P_free the projector on the unconfined axes.
    temperature = 250.0
    k_t = BOLTZMANN_MEV * temperature
    covariance = np.asarray(velocity_covariance(lattice, size, temperature, CELLS))
    same = np.all(np.mod(CELLS[:, None] - CELLS[None], size) == 0, axis=-1)
    free = np.diag((np.asarray(lattice.confinement) == 0).astype(float))
    expected = k_t / MASS * (same[:, :, None, None] * np.eye(3) - free / size**3)
    assert np.max(np.abs(covariance - expected)) <= 1e-12 * k_t / MASS


def test_quantum_covariance_tends_to_classical_at_high_temperature():
    # x coth x = 1 + x^2/3 - x^4/45 + ..., x = hbar omega / 2 k_B T, so per mode
    # quantum - classical = hbar^2 / (12 k_B T) (1 + e) with |e| <= x^2/15, giving
    #   (Q_u - C_u) 12 m k_B T / hbar^2 -> (1/N) sum_{q != 0} cos(q.d) 1 = (delta_ab - 1/N) 1,
    #   (Q_v - C_v) 12 m k_B T / hbar^2 -> (1/N) sum_q D(q) cos(q.d) = K(d) / m (real-space springs),
    # each entry off by at most x_max^2/15 (times omega_max^2 for v). Holding at T and 2T shows the
    # relative difference (Q - C)/C falls as (hbar omega / k_B T)^2 / 12, i.e. as T^-2.
    size = 4
    _, omega_max = frequency_range(LATTICE, size)
    separations = CELLS[:, None] - CELLS[None]
    same = np.all(np.mod(separations, size) == 0, axis=-1)
    wrapped = np.mod(separations + 1, size) - 1  # components in [-1, 2]: bonds are the +-1 ones
    springs = real_space_force_constants(LATTICE, wrapped) / MASS
    relative = []
    for temperature in (2000.0, 4000.0):
        k_t = BOLTZMANN_MEV * temperature
        x_max = HBAR_MEV_PS * omega_max / (2.0 * k_t)
        bound = x_max**2 / 15.0
        scale = 12.0 * MASS * k_t / HBAR_MEV_PS**2
        q_u, c_u, q_v, c_v = (
            np.asarray(function(LATTICE, size, temperature, CELLS, statistics))
            for function in (displacement_covariance, velocity_covariance)
            for statistics in ("quantum", "classical")
        )
        expected_u = same[:, :, None, None] * np.eye(3) - np.eye(3) / size**3
        assert np.max(np.abs(scale * (q_u - c_u) - expected_u)) <= bound
        assert np.max(np.abs(scale * (q_v - c_v) - springs)) <= bound * omega_max**2
        assert bound < 2e-3  # the bound is tight enough to test the leading term
        relative.append((q_u[0, 0, 0, 0] - c_u[0, 0, 0, 0]) / c_u[0, 0, 0, 0])
    assert relative[0] / relative[1] == pytest.approx(4.0, rel=2e-3)


def test_quantum_covariance_at_zero_temperature_is_zero_point():
    # independent route: hbar / (2 m N) sum_{q != 0} cos(q.d) D(q)^(-1/2) (and D^(+1/2) for v) with
    # the Daleckii-Krein symmetric power of jaxion._linalg; rounding only (1e-10).
    # At T = 2 K, coth(x) - 1 <= 2.1 exp(-2 x_min) with x_min = hbar omega_min / 2 k_B T ~ 19: equal to 1e-12.
    size = 4
    q = periodic_grid(size, 3)[1:]
    matrices = LATTICE.dynamical_matrix(q)
    phases = np.cos((CELLS[:, None] - CELLS[None]) @ q.T)
    for power, function in ((-0.5, displacement_covariance), (0.5, velocity_covariance)):
        root = symmetric_power(matrices, power)
        expected = HBAR_MEV_PS / (2 * MASS * size**3) * np.einsum("abq,qij->abij", phases, root)
        at_zero = np.asarray(function(LATTICE, size, 0.0, CELLS, "quantum"))
        assert np.max(np.abs(at_zero - expected)) <= 1e-10 * np.max(np.abs(expected))
        omega_min, _ = frequency_range(LATTICE, size)
        x_min = HBAR_MEV_PS * omega_min / (2 * BOLTZMANN_MEV * 2.0)
        cold = np.asarray(function(LATTICE, size, 2.0, CELLS, "quantum"))
        assert np.max(np.abs(cold - at_zero)) <= (2.1 * np.exp(-2 * x_min) + 1e-12) * np.max(np.abs(at_zero))
    assert np.max(np.abs(displacement_covariance(LATTICE, size, 0.0, CELLS, "classical"))) == 0.0


def test_covariance_gradients_are_finite_and_match_finite_differences():
    # the L = 4 mesh has degenerate branches (X, R points), where differentiating eigh gives NaN;
    # the Daleckii-Krein rule must stay finite (quantum weights; the classical ones share the code).
    # Central differences with step 1e-4 relative: truncation ~(1e-4)^2, rounding ~1e-16 / 1e-4;
    # agreement to 1e-6 relative (measured 1e-9).
    size, cells = 4, CELLS

    def covariance(k1, temperature, statistics):
        lattice = eqx.tree_at(lambda lat: lat.k_long, LATTICE, LATTICE.k_long.at[:3].set(k1))
        return displacement_covariance(lattice, size, temperature, cells, statistics)

    point = np.array([520.0, 300.0])
    derivative = jax.jit(lambda p, dp: jax.jvp(lambda x: covariance(x[0], x[1], "quantum"), (p,), (dp,))[1])
    for argnum in range(2):
        step = np.eye(2)[argnum] * 1e-4 * point[argnum]
        grad = derivative(point, np.eye(2)[argnum])
        up, down = covariance(*(point + step), "quantum"), covariance(*(point - step), "quantum")
        difference = (up - down) / (2 * step[argnum])
        assert np.all(np.isfinite(grad))
        assert np.max(np.abs(grad - difference)) <= 1e-6 * np.max(np.abs(difference))


# ------------------------------------------------------------------ the sampled state


@pytest.mark.parametrize("statistics", ["classical", "quantum"])
def test_site_motion_equals_fft_field(statistics):
    # direct O(S N) mode sum at arbitrary (negative, > L) cells vs the FFT field at the cells mod L;
    # both sum N = 125 terms of size |a|, rounding ~N eps |a|: 1e-12 of the rms amplitude.
    size = 5  # odd: FFT order differs from the even case
    modes = thermal_modes(LATTICE, size, 300.0, jax.random.key(1), statistics=statistics)
    assert isinstance(modes, ThermalModes)
    assert modes.amplitudes.shape == (size**3, 3) and modes.polarisations.shape == (size**3, 3, 3)
    cells = np.concatenate([CELLS, [[-1, -1, -1], [12, 0, -13]]])
    scale = np.sqrt(np.sum(np.abs(np.asarray(modes.amplitudes)) ** 2))
    for t in (0.0, 0.731):
        u, v = modes.site_motion(cells, t)
        index = tuple(np.mod(cells, size).T)
        assert np.max(np.abs(u - modes.displacements(t)[index])) <= 1e-12 * scale
        assert np.max(np.abs(v - modes.velocities(t)[index])) <= 1e-12 * scale * 31.4


@pytest.mark.parametrize("lattice", [LATTICE, CONFINED])
def test_sampled_motion_obeys_equations_of_motion_and_conserves_energy(lattice):
    # (1) v = du/dt: jax.jvp of displacements(t) in t; (2) m dv/dt = F(u) with the springs summed
    # in real space by jnp.roll over the bond list; both exact up to rounding (1e-10 of the scale).
    # (3) finite differences, no autodiff: m (u(t+h) - 2u(t) + u(t-h))/h^2 = F with truncation
    # (h omega_max)^2 / 12 relative (h = 2e-3 ps: 3e-4), bound 1e-3. (4) energy() = real-space
    # kinetic + spring energy at two times, to 1e-12 relative.
    size, t, h = 5, 0.41, 2e-3
    for statistics in ("classical", "quantum"):
        modes = thermal_modes(lattice, size, 300.0, jax.random.key(7), statistics=statistics)
        u, du = jax.jvp(modes.displacements, (t,), (1.0,))
        v, dv = jax.jvp(modes.velocities, (t,), (1.0,))
        force = real_space_forces(lattice, u)
        assert np.max(np.abs(du - v)) <= 1e-10 * np.max(np.abs(v))
        assert np.max(np.abs(MASS * dv - force)) <= 1e-10 * np.max(np.abs(force))
        second = (modes.displacements(t + h) - 2 * u + modes.displacements(t - h)) / h**2
        assert np.max(np.abs(MASS * second - force)) <= 1e-3 * np.max(np.abs(force))
        for time in (0.0, 1.3):
            energy = real_space_energy(lattice, modes.displacements(time), modes.velocities(time))
            assert float(modes.energy()) == pytest.approx(float(energy), rel=1e-12)


def test_translation_modes_carry_nothing():
    # gapless: the Gamma amplitudes are exactly zero and the centre of mass is at rest (to rounding,
    # 1e-14 of the rms motion); confined z: the Gamma oscillator along z is sampled, x and y still zero.
    for statistics in ("classical", "quantum"):
        modes = thermal_modes(LATTICE, 4, 300.0, jax.random.key(2), statistics=statistics)
        assert np.all(np.asarray(modes.amplitudes[0]) == 0)
        for field in (modes.displacements(0.9), modes.velocities(0.9)):
            rms = np.sqrt(np.mean(field**2))
            assert np.max(np.abs(np.mean(field, axis=(0, 1, 2)))) <= 1e-14 * rms
        confined = thermal_modes(CONFINED, 4, 300.0, jax.random.key(2), statistics=statistics)
        assert np.all(np.asarray(confined.amplitudes[0, :2]) == 0) and confined.amplitudes[0, 2] != 0
        centre = np.mean(confined.displacements(0.0), axis=(0, 1, 2))
        assert np.max(np.abs(centre[:2])) <= 1e-14 and abs(centre[2]) > 1e-6


def test_zero_temperature():
    # classical: at rest; quantum: every mode in its ground state, E = sum hbar omega / 2 (1e-12)
    classical = thermal_modes(LATTICE, 4, 0.0, jax.random.key(0))
    assert np.all(np.asarray(classical.amplitudes) == 0) and np.all(np.asarray(classical.displacements(1.0)) == 0)
    quantum = thermal_modes(LATTICE, 4, 0.0, jax.random.key(0), statistics="quantum")
    zero_point = 0.5 * HBAR_MEV_PS * np.sum(np.asarray(quantum.frequencies))
    assert float(quantum.energy()) == pytest.approx(zero_point, rel=1e-12)
    assert np.allclose(quantum.mode_energies(), 0.5 * HBAR_MEV_PS * quantum.frequencies, rtol=1e-12, atol=0)


# Ensembles: 8000 keys, L = 4, T = 80 K (hbar omega / k_B T from 0.94 to 3.0, x = exp(-that) from
# 0.05 to 0.39: strongly quantum, yet every mode occupied often enough, 8000 x >= 400, for the
# normal approximation of the sample means). One sampled ensemble per statistics serves both tests.
ENSEMBLE_SIZE, ENSEMBLE_TEMPERATURE, ENSEMBLE_COUNT, ENSEMBLE_TIME = 4, 80.0, 8000, 0.37
ENSEMBLE_CELLS = CELLS[[0, 1, 3]]
# Gaussian false-failure chance 1e-7 per test; the skewness of the geometric law (sample-mean
# skewness <= 0.05 here) raises a 6.5-sigma tail at most ~3x, keeping the true chance below 1e-6
FALSE_FAILURE = 1e-7


@functools.lru_cache(maxsize=None)
def ensemble(statistics):
    """``(mode energies (K, N, 3), u (K, S, 3), v (K, S, 3))`` over ``K`` keys, one compile."""
    def one(key):
        modes = thermal_modes(LATTICE, ENSEMBLE_SIZE, ENSEMBLE_TEMPERATURE, key, statistics=statistics)
        return (modes.mode_energies(),) + modes.site_motion(ENSEMBLE_CELLS, ENSEMBLE_TIME)

    keys = jax.random.split(jax.random.key(20240 if statistics == "classical" else 20241), ENSEMBLE_COUNT)
    return tuple(np.asarray(x) for x in jax.jit(jax.vmap(one))(keys))


def exact_second_moments(statistics):
    """``(18, 18)`` exact ``<x x^T>`` of ``x = (u, v)`` at the ensemble's three sites."""
    size, temperature, index = ENSEMBLE_SIZE, ENSEMBLE_TEMPERATURE, [0, 1, 3]  # ENSEMBLE_CELLS in CELLS
    block = np.zeros((18, 18))
    for part, function in ((slice(0, 9), displacement_covariance), (slice(9, 18), velocity_covariance)):
        covariance = np.asarray(function(LATTICE, size, temperature, CELLS, statistics))[index][:, index]
        block[part, part] = covariance.transpose(0, 2, 1, 3).reshape(9, 9)
    return block


@pytest.mark.parametrize("statistics", ["classical", "quantum"])
def test_ensemble_reproduces_displacement_and_velocity_covariance(statistics):
    # All 171 distinct second moments of the 18 components x = (u, v) of three sites at t = 0.37 ps,
    # and the 18 means, against the exact values: u-u and v-v blocks from the covariance functions
    # (checked above against independent routes), u-v = 0 and means = 0 (the q and -q terms cancel).
    # z = (estimate - exact) / (sample standard error) within the Bonferroni threshold over all 189
    # numbers. The test can fail: the ensemble must reject the other statistics' variances on every
    # component by more than the threshold (quantum / classical variance ratio 1.25 to 1.35 here).
    _, u, v = ensemble(statistics)
    count = ENSEMBLE_COUNT
    threshold = bonferroni(171 + 18, FALSE_FAILURE)
    other = "quantum" if statistics == "classical" else "classical"
    x = np.concatenate([u.reshape(count, 9), v.reshape(count, 9)], axis=1)
    upper = np.triu_indices(18)
    products = (x[:, :, None] * x[:, None, :])[:, upper[0], upper[1]]
    error = products.std(0, ddof=1) / np.sqrt(count)
    z = (products.mean(0) - exact_second_moments(statistics)[upper]) / error
    z_mean = x.mean(0) / (x.std(0, ddof=1) / np.sqrt(count))
    assert np.max(np.abs(z)) < threshold and np.max(np.abs(z_mean)) < threshold
    squares = x**2
    z_other = (squares.mean(0) - np.diag(exact_second_moments(other))) / (squares.std(0, ddof=1) / np.sqrt(count))
    assert np.min(np.abs(z_other)) > threshold


@pytest.mark.parametrize("statistics", ["classical", "quantum"])
def test_mode_energies_follow_the_statistics(statistics):
    # Per mode (189 modes): the mean energy against k_B T (classical) or hbar omega (n_BE + 1/2)
    # (quantum), z from the exact standard deviation (k_B T; hbar omega sqrt(x) / (1 - x)); and the
    # pooled variance ratio var / var_exact against 1 (exponential or geometric law, not e.g. a
    # fixed energy), z from the sample's own spread. Bonferroni over the 190 numbers.
    energies = ensemble(statistics)[0].reshape(ENSEMBLE_COUNT, -1)
    count, k_t = ENSEMBLE_COUNT, BOLTZMANN_MEV * ENSEMBLE_TEMPERATURE
    omega = np.asarray(thermal_modes(LATTICE, ENSEMBLE_SIZE, 0.0, jax.random.key(0)).frequencies).reshape(-1)
    assert np.all(energies[:, :3] == 0)  # the three translations
    energies, omega = energies[:, 3:], omega[3:]
    if statistics == "classical":
        mean, sd = np.full_like(omega, k_t), np.full_like(omega, k_t)
    else:
        x = np.exp(-HBAR_MEV_PS * omega / k_t)
        mean = HBAR_MEV_PS * omega * (x / (1 - x) + 0.5)
        sd = HBAR_MEV_PS * omega * np.sqrt(x) / (1 - x)
    threshold = bonferroni(omega.size + 1, FALSE_FAILURE)
    z = (energies.mean(0) - mean) / (sd / np.sqrt(count))
    assert np.max(np.abs(z)) < threshold
    standardized = ((energies - mean) / sd) ** 2
    ratio, ratio_error = standardized.mean(), standardized.mean(1).std(ddof=1) / np.sqrt(count)
    assert abs(ratio - 1.0) < threshold * ratio_error
    # resolving power: each mode's mean to better than 0.1 k_B T, the variance ratio to < 5%
    assert threshold * np.max(sd) / np.sqrt(count) < 0.1 * k_t and threshold * ratio_error < 0.05


# ------------------------------------------------------------------ transformations and inputs


def test_jit_and_vmap():
    # (the ensembles above jit a vmap over keys of the whole sampler.) A vmap over keys of the
    # energy and its temperature gradient equals separate calls; site_motion jits with traced
    # integer cells and vmaps over cells and times. Same operations compiled differently:
    # agreement to 1e-13 relative.
    key = jax.random.key(5)
    keys = jax.random.split(key, 3)
    energy = lambda k, temp: thermal_modes(LATTICE, 4, temp, k).energy()
    values, grads = jax.vmap(jax.value_and_grad(energy, argnums=1), (0, None))(keys, 200.0)
    single = np.array([energy(k, 200.0) for k in keys])
    np.testing.assert_allclose(values, single, rtol=1e-13)
    # gradient in T through the sampler (reparameterised: E_total = k_B T sum Exp(1), linear in T)
    np.testing.assert_allclose(grads, single / 200.0, rtol=1e-12)
    modes = thermal_modes(LATTICE, 4, 200.0, key)
    cells = jnp.asarray(CELLS, dtype=jnp.int32)
    times = jnp.array([0.0, 0.2])
    u_many, v_many = jax.jit(jax.vmap(lambda c, t: modes.site_motion(c[None], t)))(cells[:2], times)
    u, v = modes.site_motion(CELLS[1:2], 0.2)
    assert np.max(np.abs(u_many[1] - u)) <= 1e-13 * np.max(np.abs(u))
    assert np.max(np.abs(v_many[1] - v)) <= 1e-13 * np.max(np.abs(v))


def test_bad_inputs_raise_value_errors_naming_the_argument():
    key = jax.random.key(0)
    for size in (1, 0, 2.5, "4", True):
        with pytest.raises(ValueError, match="size"):
            thermal_modes(LATTICE, size, 300.0, key)
    for temperature in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            thermal_modes(LATTICE, 4, temperature, key)
    with pytest.raises(ValueError, match="temperature"):
        thermal_modes(LATTICE, 4, [300.0, 400.0], key)
    with pytest.raises(ValueError, match="lattice must be a 3D"):
        thermal_modes(Chain(), 4, 300.0, key)
    with pytest.raises(ValueError, match="lattice"):
        thermal_modes("cubic", 4, 300.0, key)
    with pytest.raises(ValueError, match=r"statistics must be one of \('classical', 'quantum'\)"):
        thermal_modes(LATTICE, 4, 300.0, key, statistics="bose")
    with pytest.raises(ValueError, match="statistics"):
        displacement_covariance(LATTICE, 4, 300.0, CELLS, "bose")
    with pytest.raises(ValueError, match="cells"):
        displacement_covariance(LATTICE, 4, 300.0, CELLS[:, :2])
    with pytest.raises(ValueError, match="cells"):
        velocity_covariance(LATTICE, 4, 300.0, CELLS + 0.5)
    with pytest.raises(ValueError, match="temperature"):
        velocity_covariance(LATTICE, 4, -3.0, CELLS)
    with pytest.raises(ValueError, match="cells"):
        thermal_modes(LATTICE, 4, 300.0, key).site_motion(CELLS[0], 0.0)
