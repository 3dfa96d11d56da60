"""The white-noise Langevin equation (physics.md 5.2) and its splitting integrator, each check
against an independent route.

Statistical checks use fixed seeds and block means over independent trajectories, with the
two-sided Student-t tolerance at probability ``P_FAIL = 1e-6`` per check (5.0-5.4 standard
errors for 64-256 blocks; 36 checks in all), so the whole module fails less than once in 1e4
runs; each also asserts that its error bar is small enough for the check to be able to fail, and
that the integrator's own bias at the step used (computed exactly where it can be) is well inside
the tolerance.

To keep the module fast, the runs share three compilations: a batch of 256 trajectories of 4000
saved steps of a cheap analytic stand-in for the model (harmonic well, free Ornstein-Uhlenbeck
limit, non-finite run), the same run unbatched (zero temperature, same key alone and in a batch),
and a batch of the real follow-up model.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, stats

import jaxion  # noqa: F401  (enables float64)
from jaxion.thermal.wells import Cage, Well
from jaxion.thermal.langevin import GridBrownianPath, LangevinDynamics, run_langevin
from jaxion.thermal.model import follow_up_model
from jaxion.units import BOLTZMANN_MEV
from jaxion.thermal.trajectory import NonFiniteThermalRunError

P_FAIL = 1e-6
MASS = 0.7  # meV ps^2 / Å^2, the follow-up's lithium-like ion
TEMPERATURE = 300.0
KT = BOLTZMANN_MEV * TEMPERATURE  # meV

# The shared shapes: BATCH trajectories of STEPS steps, every step saved.
BATCH, STEPS = 256, 4000


def _t_tol(n_blocks):
    """Two-sided Student-t quantile at probability P_FAIL for a mean of ``n_blocks`` blocks."""
    return stats.t.isf(P_FAIL / 2, n_blocks - 1)


def _block_mean(blocks):
    """Mean and standard error over the leading (trajectory) axis."""
    blocks = np.asarray(blocks)
    return blocks.mean(axis=0), blocks.std(axis=0, ddof=1) / np.sqrt(blocks.shape[0])


def _rotation(a, b, c):
    """A rotation matrix (so that no tensor below is diagonal in the Cartesian axes)."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _cage(curvature_eigenvalues, loss_diagonal, quartic, angles=(0.3, -0.7, 1.1)):
    rotation = _rotation(*angles)
    curvature = rotation @ np.diag(curvature_eigenvalues) @ rotation.T
    return Cage(jnp.asarray(MASS), jnp.diag(jnp.asarray(loss_diagonal)), jnp.asarray(curvature), jnp.asarray(quartic))


def _well(stiffness, quartic=0.0):
    return Well(jnp.asarray(stiffness), jnp.asarray(quartic))


@eqx.filter_jit
def _frictions(cage, positions):
    """``H L H`` at positions ``(n, 3)`` straight from the stand-in's Hessian (not through
    LangevinDynamics)."""

    def friction(position):
        hessian = cage.hessian(position)
        return hessian @ cage.loss_tensor @ hessian

    return jax.vmap(friction)(jnp.asarray(positions))


def _ensemble(dynamics, positions, velocities, dt, key):
    """The shared batched run: BATCH trajectories, STEPS steps, every step saved."""
    keys = jax.random.split(key, BATCH)
    run = jax.vmap(lambda k, r, v: run_langevin(dynamics, (r, v), STEPS * dt, dt, key=k, save_every=1))
    return keys, run(keys, positions, velocities)


# --------------------------------------------------------------------------------------------
# Stationary Boltzmann distribution


STIFFNESS = 50.0  # meV/Å^2: well frequency sqrt(k / M) = 8.45 rad/ps
CAGE = ([20.0, 40.0, 80.0], [2e-3, 4e-3, 8e-3], 5.0)  # the friction stand-in of the harmonic runs
HARMONIC_DT = 0.01  # ps: w dt = 0.085


@pytest.fixture(scope="module")
def harmonic():
    """256 trajectories in the harmonic well with a position-dependent, anisotropic friction
    (damping rates from ~3 to ~100 /ps over the bulk of the sampled region), started from the
    exact Boltzmann distribution."""
    cage = _cage(*CAGE)
    dynamics = LangevinDynamics(cage, _well(STIFFNESS), temperature=TEMPERATURE)
    start = jax.random.normal(jax.random.key(10), (2, BATCH, 3))
    positions, velocities = np.sqrt(KT / STIFFNESS) * start[0], np.sqrt(KT / MASS) * start[1]
    keys, run = _ensemble(dynamics, positions, velocities, HARMONIC_DT, jax.random.key(11))
    return dict(dynamics=dynamics, cage=cage, keys=keys, start=(positions, velocities), run=run)


def _baoab_stationary_bias(phase, damping):
    """Exact stationary ``(<k R^2>, <M V^2>) / k_B T - 1`` of one BAOAB step in a 1D harmonic well
    with constant friction: ``phase = w h``, ``damping = gamma h`` (discrete Lyapunov equation)."""
    kick = np.array([[1.0, 0.0], [-0.5 * phase**2, 1.0]])  # units where h = 1 and k_B T / M = 1
    drift = np.array([[1.0, 0.5], [0.0, 1.0]])
    decay = np.exp(-damping)
    step = kick @ drift @ np.diag([1.0, decay]) @ drift @ kick
    noise = kick @ drift @ np.array([0.0, np.sqrt(1.0 - decay**2)])
    covariance = linalg.solve_discrete_lyapunov(step, np.outer(noise, noise))
    return covariance[0, 0] * phase**2 - 1.0, covariance[1, 1] - 1.0


def test_harmonic_well_samples_boltzmann_whatever_the_friction(harmonic):
    # Independent route: the exact Boltzmann values <M V_a^2> = <k R_a^2> = k_B T per Cartesian
    # component. Blocks are the 256 independent trajectories (time averages after a 2.5 ps burn-in,
    # against relaxation times below 0.5 ps at typical friction).
    run, cage = harmonic["run"], harmonic["cage"]
    assert bool(np.all(np.asarray(run.finite)))
    burn = 250  # 2.5 ps
    velocity_blocks = (MASS * np.asarray(run.velocities[:, burn:]) ** 2 / KT).mean(axis=1)
    position_blocks = (STIFFNESS * np.asarray(run.positions[:, burn:]) ** 2 / KT).mean(axis=1)
    tolerance_factor = _t_tol(BATCH)

    # The friction really varies over the sampled region (else this would be the constant case).
    rates = np.linalg.eigvalsh(np.asarray(_frictions(cage, run.positions[:, burn::50].reshape(-1, 3)))) / MASS
    assert np.percentile(rates, 5) < 5.0 and np.percentile(rates, 95) > 50.0

    # BAOAB's bias, exactly, for constant friction at every rate met: positions exact, velocities
    # low by (w h)^2 / 4 = 0.18 % whatever the friction; it must sit well inside the tolerance.
    phase = np.sqrt(STIFFNESS / MASS) * HARMONIC_DT
    biases = np.array([_baoab_stationary_bias(phase, g * HARMONIC_DT) for g in np.geomspace(0.01, 1e3, 12)])
    # the splitting's midpoint velocities (every step, after the O step): exact for constant friction
    midpoint_blocks = np.asarray(run.midpoint_kinetic_temperature)[:, None] / TEMPERATURE
    for blocks, bias in ((position_blocks, biases[:, 0]), (velocity_blocks, biases[:, 1]),
                         (midpoint_blocks, np.zeros(1))):
        mean, error = _block_mean(blocks)
        assert np.all(error < 0.015), error  # an 8 % error in the temperature cannot pass
        assert np.max(np.abs(bias)) < 0.3 * tolerance_factor * error.min()
        np.testing.assert_array_less(np.abs(mean - 1.0), tolerance_factor * error)


REAL_BATCH, REAL_STEPS, REAL_DT = 64, 1500, 0.005


@eqx.filter_jit
def _stiffest_curvatures(model, positions):
    """``max eig H(R)`` at each of ``positions (n, 3)``, meV/Å^2."""
    return jnp.linalg.eigvalsh(jax.vmap(model.hessian)(positions))[:, -1]


def test_real_model_kinetic_temperature():
    # Independent route: equipartition <M V^2> / 3 = k_B T, exact in the Boltzmann distribution
    # whatever the landscape. The follow-up model (U0 = 4000 meV Å, cutoff 4.5 Å: all sites within
    # reach of the cell) with its rigid landscape, whose 45 meV barrier most ions cross at 300 K;
    # the loss tensor is scaled x50 (damping ~20 /ps at the cell centre instead of 0.4, against a
    # well frequency of 11.5 rad/ps) so that the kinetic energy relaxes within the 1 ps burn-in and
    # decorrelates fast. Blocks: 64 trajectories of 6.5 ps production.
    model = follow_up_model(4000.0, cutoff=4.5, switch_width=1.5)
    model = eqx.tree_at(lambda m: m.loss_tensor, model, 50.0 * model.loss_tensor)
    dynamics = LangevinDynamics(model, temperature=TEMPERATURE)  # no landscape: the rigid one
    keys = jax.random.split(jax.random.key(20), 2 * REAL_BATCH)
    centre = jnp.full(3, 1.5)
    states = jax.vmap(lambda k: dynamics.initial_state(centre, key=k))(keys[REAL_BATCH:])
    run = jax.vmap(lambda k, s: run_langevin(dynamics, s, REAL_STEPS * REAL_DT, REAL_DT, key=k, save_every=10))(
        keys[:REAL_BATCH], states)
    assert bool(np.all(np.asarray(run.finite)))
    burn = 20  # saves: 1 ps
    blocks = (MASS * np.asarray(run.velocities[:, burn:]) ** 2 / KT).mean(axis=(1, 2))
    mean, error = _block_mean(blocks)
    assert error < 0.015  # an 8 % error in the temperature cannot pass
    # BAOAB's velocity bias, (w h)^2 / 4 in a harmonic well, estimated with w^2 = k / M for k the
    # stiffest curvature at each visited point, averaged over the visits (~0.3 %; 1.4 % for the
    # stiffest point of all, met rarely, close to a site)
    stiffest = np.asarray(_stiffest_curvatures(model, run.positions[:, burn::10].reshape(-1, 3)))
    assert np.mean(stiffest) / MASS * REAL_DT**2 / 4 < 0.2 * _t_tol(REAL_BATCH) * error
    assert abs(mean - 1.0) < _t_tol(REAL_BATCH) * error, (mean, error)
    # the ions left their cell: the landscape, not just one harmonic well, was sampled
    assert np.any(np.abs(np.floor(np.asarray(run.positions[:, -1]) / 3.0) - 0.0) > 0)


# --------------------------------------------------------------------------------------------
# Free Ornstein-Uhlenbeck limit


OU_DT = 0.02


def _matrix_function(matrix, function):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * function(values)) @ vectors.T


def _trapezoid_displacement_variance(rate, lag_steps, dt):
    """Variance (units k_B T / M) of ``h sum (v_n + v_{n+1}) / 2`` over ``lag_steps`` steps of the
    exact stationary AR(1) velocity chain with decay ``exp(-rate h)``: what the splitting computes
    for a free particle."""
    weights = np.full(lag_steps + 1, dt)
    weights[[0, -1]] = 0.5 * dt
    index = np.arange(lag_steps + 1)
    correlation = np.exp(-rate * dt * np.abs(index[:, None] - index[None, :]))
    return weights @ correlation @ weights


def test_free_ornstein_uhlenbeck_velocity_correlation_and_displacement():
    # Independent route: the closed forms of the OU process for an anisotropic, non-diagonal
    # damping matrix A = Gamma / M (eigenvalues ~1, 3, 9 /ps):
    #   <V(t) V(0)^T> = (k_B T / M) exp(-A t),
    #   <dR dR^T>(t)  = 2 (k_B T / M) A^-2 (A t - 1 + exp(-A t)).
    # Constant H (no quartic term), no landscape, velocities started from the Maxwell draw. Blocks:
    # the 256 trajectories, each averaged over all time origins.
    cage = _cage([30.0, 60.0, 100.0], [1.2e-3, 8e-4, 6e-4], 0.0, angles=(1.0, 0.4, -0.5))
    dynamics = LangevinDynamics(cage, _well(0.0), temperature=TEMPERATURE)
    rate = np.asarray(_frictions(cage, np.zeros((1, 3)))[0]) / MASS
    assert np.allclose(np.sort(np.linalg.eigvalsh(rate)), [1.0, 3.0, 9.0], rtol=0.5)
    keys = jax.random.split(jax.random.key(30), BATCH)
    velocities = jax.vmap(lambda k: dynamics.initial_state(jnp.zeros(3), key=k)[1])(keys)
    _, run = _ensemble(dynamics, jnp.zeros((BATCH, 3)), velocities, OU_DT, jax.random.key(31))
    v, r = np.asarray(run.velocities), np.asarray(run.positions)
    scale = KT / MASS
    tolerance_factor = _t_tol(BATCH)

    checks = []
    for lag in (0, 10):  # 0 and 0.2 ps
        blocks = np.einsum("bti,btj->bij", v[:, lag:], v[:, : v.shape[1] - lag]) / (v.shape[1] - lag)
        exact = scale * _matrix_function(rate, lambda x: np.exp(-x * lag * OU_DT))
        checks.append((blocks, exact, 0.0))
    lag = 100  # 2 ps
    steps = r[:, lag:] - r[:, :-lag]
    blocks = np.einsum("bti,btj->bij", steps, steps) / steps.shape[1]
    t = lag * OU_DT
    exact = 2 * scale * _matrix_function(rate, lambda x: (x * t - 1 + np.exp(-x * t)) / x**2)
    # the splitting integrates R by the trapezoid rule on the exact velocity chain: its bias, exactly
    values, vectors = np.linalg.eigh(rate)
    discrete = scale * (vectors * [_trapezoid_displacement_variance(x, lag, OU_DT) for x in values]) @ vectors.T
    checks.append((blocks, exact, np.max(np.abs(discrete - exact))))

    for blocks, exact, bias in checks:
        mean, error = _block_mean(blocks)
        size = np.max(np.abs(exact))
        assert np.max(error) < 0.02 * size  # a 10 % error in the decay cannot pass
        assert bias < 0.3 * tolerance_factor * np.min(error)
        np.testing.assert_array_less(np.abs(mean - exact), tolerance_factor * error)


# --------------------------------------------------------------------------------------------
# Zero temperature: the energy falls exactly as the drag works


def test_zero_temperature_energy_falls_as_the_drag_works():
    # Independent route: d(KE + U)/dt = -V^T Gamma V. The dissipation is integrated along the saved
    # trajectory (trapezoid rule on every step) with Gamma = H L H from the stand-in's Hessian, and
    # the residual r(h) = E(t) - E(0) + int V^T Gamma V dt must vanish as the second-order splitting
    # and quadrature do: r(h) / r(h/2) = 4 (+-0.5), and the Richardson extrapolation
    # (4 r(h/2) - r(h)) / 3, which removes the h^2 term, is below 1e-5 of the energy dissipated
    # (observed 1.5e-7; r(h/2) itself is 3e-4 of it, mostly the quadrature's). Same 4000 steps at
    # both steps, so compared at the common time 4 ps. The splitting's own drag work accumulates
    # the same energy change (to its O(h^2) shadow work, 2e-5 here), and the noise does none.
    cage = _cage(*CAGE)
    dynamics = LangevinDynamics(cage, _well(STIFFNESS, 30.0), temperature=0.0)
    state = dynamics.initial_state(jnp.array([0.3, -0.2, 0.4]), jnp.array([6.0, -3.0, 2.0]))
    assert np.all(np.asarray(dynamics.initial_state(jnp.zeros(3))[1]) == 0.0)
    residuals = []
    for dt in (0.002, 0.001):
        run = run_langevin(dynamics, state, STEPS * dt, dt, key=jax.random.key(40))
        assert float(run.noise_work) == 0.0
        half = STEPS // 2 if dt == 0.002 else STEPS  # the common time 4 ps
        positions, velocities = np.asarray(run.positions[: half + 1]), np.asarray(run.velocities[: half + 1])
        dissipation = np.einsum("ti,tij,tj->t", velocities, np.asarray(_frictions(cage, positions)), velocities)
        dissipated = np.sum(0.5 * dt * (dissipation[1:] + dissipation[:-1]))
        energy = np.asarray(run.energy[: half + 1])
        residuals.append(energy[-1] - energy[0] + dissipated)
        if dt == 0.001:
            assert dissipated > 20.0  # meV: all of the 17 meV kinetic and 8 meV potential energy
            assert abs(float(run.drag_work) - (energy[-1] - energy[0])) < 1e-4 * dissipated
    assert 3.5 < residuals[0] / residuals[1] < 4.5
    assert abs(4 * residuals[1] - residuals[0]) / 3 < 1e-5 * dissipated


# --------------------------------------------------------------------------------------------
# Reproducibility, failures, bad input


def test_same_key_same_trajectory_alone_or_in_a_batch(harmonic):
    # Independent route: the batched run of the fixture against the same key and state run alone
    # (a separate compilation of the unbatched solve): identical to 1e-12 of the scale.
    dynamics, keys, run = harmonic["dynamics"], harmonic["keys"], harmonic["run"]
    positions, velocities = harmonic["start"]
    member = 5
    alone = run_langevin(dynamics, (positions[member], velocities[member]), STEPS * HARMONIC_DT, HARMONIC_DT,
                         key=keys[member], save_every=1)
    np.testing.assert_allclose(alone.positions, run.positions[member], rtol=0, atol=1e-12)
    np.testing.assert_allclose(alone.velocities, run.velocities[member], rtol=0, atol=1e-11)
    # different keys give different noise (the grid path's increments), and different trajectories
    path = [GridBrownianPath((3,), k, HARMONIC_DT) for k in keys[:2]]
    assert not np.allclose(path[0].evaluate(0.0, HARMONIC_DT), path[1].evaluate(0.0, HARMONIC_DT))
    assert np.max(np.abs(np.asarray(run.positions[0] - run.positions[1]))) > 0.1


def test_grid_path_increments_are_standard_and_independent():
    # Independent route: the N(0, h) law: the 3 x 4000 increments of one key, normalised, have unit
    # variance and no lag-1 correlation (standard errors sqrt(2/n) and 1/sqrt(n) of a Gaussian).
    dt = 0.01
    path = GridBrownianPath((3,), jax.random.key(50), dt)
    ts = dt * jnp.arange(STEPS)
    w = np.asarray(jax.vmap(lambda t: path.evaluate(t, t + dt))(ts)).ravel() / np.sqrt(dt)
    n = w.size
    assert abs(np.mean(w**2) - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(w[1:] * w[:-1])) < 5 / np.sqrt(n)
    # the same step gives the same increment, whatever the Lévy area asked for
    import diffrax

    area = GridBrownianPath((3,), jax.random.key(50), dt, levy_area=diffrax.SpaceTimeLevyArea)
    increment = area.evaluate(ts[7], ts[7] + dt, use_levy=True)
    np.testing.assert_array_equal(increment.W, path.evaluate(ts[7], ts[7] + dt))


def test_non_finite_run_raises_and_flags(harmonic):
    # A quartic term b < 0 makes the well a 1250 meV high crater of radius 10 Å; an ion started
    # outside it is thrown to infinity in finite time (R'' ~ |b| R^3 / M): run alone it raises, in
    # a batch that member is flagged and holds NaN from its first bad save on, the rest are intact.
    cage = harmonic["cage"]
    dynamics = LangevinDynamics(cage, _well(STIFFNESS, -0.5), temperature=TEMPERATURE)
    start = (jnp.array([12.0, 12.0, 12.0]), jnp.zeros(3))
    with pytest.raises(NonFiniteThermalRunError):
        run_langevin(dynamics, start, STEPS * HARMONIC_DT, HARMONIC_DT, key=jax.random.key(60))
    positions = jnp.zeros((BATCH, 3)).at[3].set(start[0])
    _, run = _ensemble(dynamics, positions, jnp.zeros((BATCH, 3)), HARMONIC_DT, jax.random.key(61))
    finite = np.asarray(run.finite)
    assert not finite[3] and finite.sum() == BATCH - 1
    assert np.all(np.isnan(np.asarray(run.positions[3, -1])))
    assert np.isnan(float(run.mean_kinetic_energy[3])) and np.isnan(float(run.drag_work[3]))
    assert np.all(np.isfinite(np.asarray(run.positions[:3])))


def test_bad_input_raises_value_error_naming_the_argument():
    cage = _cage(*CAGE)
    dynamics = LangevinDynamics(cage, _well(STIFFNESS), temperature=TEMPERATURE)
    state = (jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        LangevinDynamics(cage, _well(STIFFNESS), temperature=-1.0)
    with pytest.raises(ValueError, match="position"):
        dynamics.initial_state(jnp.array([0.0, jnp.nan, 0.0]), key=jax.random.key(0))
    with pytest.raises(ValueError, match="position"):
        run_langevin(dynamics, (jnp.array([jnp.nan, 0.0, 0.0]), jnp.zeros(3)), 1.0, 0.01, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        dynamics.initial_state(jnp.zeros(3))
    for dt in (0.0, -0.01):
        with pytest.raises(ValueError, match="dt"):
            run_langevin(dynamics, state, 1.0, dt, key=jax.random.key(0))
    # sqrt(M / k) = 0.118 ps in the k = 50 meV/Å^2 well: dt = 0.1 ps is more than half of it
    with pytest.raises(ValueError, match=r"dt = 0\.1 ps is too large for the ion's well.*k = 50 meV/Å\^2"):
        run_langevin(dynamics, state, 1.0, 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="save_every"):
        run_langevin(dynamics, state, 1.0, 0.01, key=jax.random.key(0), save_every=0)
    with pytest.raises(ValueError, match="additive noise"):
        run_langevin(dynamics, state, 1.0, 0.01, key=jax.random.key(0), solver="shark")
    with pytest.raises(ValueError, match="loss_tensor"):
        LangevinDynamics(eqx.tree_at(lambda c: c.loss_tensor, cage, -cage.loss_tensor), _well(STIFFNESS))
