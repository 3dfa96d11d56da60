"""Transport observables (physics.md 5.5): each check against an independent route.

Statistical checks use fixed seeds, and a tolerance at which a correct code fails with
probability about 1e-6 per check (``P_FAIL``), so the whole module fails less than once in 1e4
runs: for block means with ``n`` blocks the two-sided Student-t quantile with ``n - 1`` degrees
of freedom (``_t_tol``; 5.4 standard errors for 64 blocks, 4.9 for a Gaussian), because the
standard error itself is estimated from the blocks; for estimates with an exactly known Gaussian
error, 5 standard errors (two-sided probability 5.7e-7). Each statistical test also asserts that
its error bar is small (relative error < 5 %), so that the check can fail.

Brownian paths are made with NumPy (Gaussian increments of covariance 2 D dt), independently of
the code under test, which sees only positions. Block estimates there are means of many
quadratic terms, close to Gaussian, so the Student-t tolerance applies.
"""

import jax
import numpy as np
import pytest
from scipy import constants as sc
from scipy import stats

import jaxion  # noqa: F401  (enables float64)
from jaxion.units import BOLTZMANN_MEV as BOLTZMANN
from jaxion.thermal.transport import (
    arrhenius_fit,
    block_mean,
    diffusion_tensor,
    drift_mobility,
    einstein_mobility,
    kinetic_temperature,
    mean_squared_displacement,
    nernst_einstein_conductivity,
)

P_FAIL = 1e-6  # allowed two-sided failure probability of one statistical check
KB_SCIPY = sc.k / sc.e * 1e3  # k_B in meV/K from scipy's CODATA (exact in the 2019 SI)

# 256 Brownian trajectories of 401 saved times (4 ps at dt = 0.01 ps), fitted over 0.05-0.5 ps:
# one shape for the three tests that use it, so the code compiles once.
BROWNIAN_SHAPE = (256, 401)

# An anisotropic diffusion tensor with off-diagonal terms (positive definite), Å^2/ps.
D_TRUE = np.array([[0.5, 0.1, 0.05], [0.1, 0.3, -0.08], [0.05, -0.08, 0.2]])


def _t_tol(n_blocks):
    """Two-sided Student-t quantile at probability P_FAIL for a mean of ``n_blocks`` blocks."""
    return stats.t.isf(P_FAIL / 2, n_blocks - 1)


def _brownian(rng, diffusion, n_traj, n_times, dt, drift=np.zeros(3)):
    """``(B, T, 3)`` paths starting at a random point: increments N(drift dt, 2 D dt)."""
    chol = np.linalg.cholesky(diffusion)
    steps = drift * dt + np.sqrt(2 * dt) * rng.standard_normal((n_traj, n_times - 1, 3)) @ chol.T
    start = rng.uniform(-5, 5, (n_traj, 1, 3))
    return np.concatenate([start, start + np.cumsum(steps, axis=1)], axis=1)


# --------------------------------------------------------------------------------------------
# block statistics and MSD (exact)


def test_block_mean_hand_values():
    # Independent route: the textbook numbers for 1, 2, 3, 4 (mean 2.5, sample variance 5/3,
    # standard error sqrt(5/12)); exact up to rounding.
    samples = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    mean, error = block_mean(samples)
    np.testing.assert_allclose(mean, [2.5, 25.0], rtol=1e-15)
    np.testing.assert_allclose(error, np.sqrt(5 / 12) * np.array([1.0, 10.0]), rtol=1e-14)
    mean_t, error_t = block_mean(samples.T, axis=-1)
    np.testing.assert_allclose(mean_t, mean, rtol=1e-15)
    np.testing.assert_allclose(error_t, error, rtol=1e-15)


def test_msd_matches_double_loop():
    # Independent route: brute-force loops over lags and origins in NumPy. Both form each
    # displacement then sum products, so they agree to rounding: 1e-12 of the largest entry.
    rng = np.random.default_rng(1)
    positions = 100.0 + np.cumsum(rng.standard_normal((2, 9, 3)), axis=1)
    result = mean_squared_displacement(positions, dt=0.2, max_lag=5)
    expected = np.zeros((2, 6, 3, 3))
    for b in range(2):
        for k in range(6):
            for t0 in range(9 - k):
                step = positions[b, t0 + k] - positions[b, t0]
                expected[b, k] += np.outer(step, step) / (9 - k)
    np.testing.assert_allclose(result.lags, 0.2 * np.arange(6), rtol=1e-15)
    np.testing.assert_allclose(result.tensor, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(result.msd, np.trace(expected, axis1=-2, axis2=-1), atol=1e-12 * np.abs(expected).max())


def test_msd_of_ballistic_path_is_v_squared_t_squared():
    # Independent route: R = R0 + v t gives dR_a dR_b = v_a v_b t^2 at every origin, exactly.
    # Rounding of positions (|R| <= 10) relative to the smallest displacement (0.07 Å): < 1e-13.
    velocity = np.array([0.3, -1.2, 0.7])
    dt, n_times = 0.05, 50
    times = dt * np.arange(n_times)
    positions = np.array([[1.0, -2.0, 3.0], [-4.0, 0.5, 2.0]])[:, None, :] + velocity * times[None, :, None]
    result = mean_squared_displacement(positions, dt=dt, max_lag=n_times - 1)
    expected = np.outer(velocity, velocity)[None, None] * times[None, :, None, None] ** 2
    np.testing.assert_allclose(result.tensor, np.broadcast_to(expected, (2, n_times, 3, 3)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.msd, np.broadcast_to(velocity @ velocity * times**2, (2, n_times)), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# diffusion tensor


def test_diffusion_tensor_recovers_anisotropic_brownian_motion():
    # 256 independent trajectories of 4 ps (dt = 0.01 ps), fit over 0.05-0.5 ps: the estimator is
    # unbiased for Brownian motion (<dR_a dR_b> = 2 D_ab t exactly). Six independent components
    # and the trace, each at P_FAIL.
    rng = np.random.default_rng(2)
    positions = _brownian(rng, D_TRUE, *BROWNIAN_SHAPE, 0.01)
    result = diffusion_tensor(positions, 0.01, fit_window=(0.05, 0.5))
    tol = _t_tol(result.n_blocks)
    assert result.n_blocks == 256
    np.testing.assert_array_less(np.abs(result.D - D_TRUE), tol * result.D_error)
    assert abs(result.D_scalar - np.trace(D_TRUE) / 3) < tol * result.D_scalar_error
    # The error bars are small enough for the checks to bite: diagonal and trace below 5 %,
    # off-diagonal well below |D_xy| = 0.1 (a sign error would fail). Expected (from the exact
    # variance of the next test): about 3 % diagonal, 2 % trace, 0.006 off-diagonal, so with
    # 255 degrees of freedom in the estimated errors these bounds are exceeded with negligible
    # probability.
    assert np.all(np.diag(result.D_error) / np.diag(D_TRUE) < 0.05)
    assert result.D_scalar_error / result.D_scalar < 0.05
    assert np.all(result.D_error < 0.02)
    np.testing.assert_allclose(result.D, result.D.T, rtol=1e-14)
    np.testing.assert_allclose(result.D_cm2_per_s, 1e-4 * result.D, rtol=1e-15)
    np.testing.assert_allclose(result.D_scalar_error_cm2_per_s, 1e-4 * result.D_scalar_error, rtol=1e-15)


def _estimator_matrix(n_times, dt, first, last):
    """``A`` with ``D_ab(block) = xi_a^T A xi_b`` for the increments ``xi (T - 1, 3)``.

    The fitted slope is ``sum_k w_k MSD_k``, ``w_k = (t_k - tbar) / sum (t - tbar)^2``, and
    ``MSD_k = sum_{i <= T-1-k} (sum_{j=i}^{i+k-1} xi_j)^2 / (T - k)``, so ``A`` counts, for each
    lag, the origins whose window covers both increments ``j`` and ``l``.
    """
    n_steps = n_times - 1
    lags = np.arange(first, last + 1)
    centred = lags * dt - np.mean(lags * dt)
    weights = centred / np.sum(centred**2)
    j = np.arange(n_steps)
    hi_jl, lo_jl = np.maximum.outer(j, j), np.minimum.outer(j, j)
    matrix = np.zeros((n_steps, n_steps))
    for k, w in zip(lags, weights):
        count = np.minimum(lo_jl, n_steps - k) - np.maximum(hi_jl - k + 1, 0) + 1
        matrix += w / (2 * (n_times - k)) * np.maximum(count, 0)
    return matrix


def test_diffusion_blocks_and_error_bar_match_exact_quadratic_form():
    # Independent route: for Brownian increments xi_j ~ N(0, Sigma = 2 D dt), each block estimate
    # is the quadratic form xi_a^T A xi_b (A built above by counting), so
    #  (1) the code's block estimates equal xi_a^T A xi_b from the increments, to rounding;
    #  (2) E[D_block] = tr(A) (2 dt D) = D, a check of A;
    #  (3) the cumulants of Q = sum_ab C_ab xi_a^T A xi_b are kappa_r = 2^(r-1) (r-1)! tr(A^r)
    #      tr((C Sigma)^r), so the block variance (= n D_error^2, what the error bar reports) has
    #      mean kappa_2 and variance kappa_4 / n + 2 kappa_2^2 / (n - 1). Its spread is modelled
    #      as kappa_2 chi^2_nu / nu with nu matching that variance (Satterthwaite), and checked
    #      at the P_FAIL quantiles, for all six components and the trace.
    (n_blocks, n_times), dt, first, last = BROWNIAN_SHAPE, 0.01, 5, 50
    rng = np.random.default_rng(3)
    positions = _brownian(rng, D_TRUE, n_blocks, n_times, dt)
    result = diffusion_tensor(positions, dt, fit_window=(first * dt, last * dt))
    matrix = _estimator_matrix(n_times, dt, first, last)
    increments = np.diff(positions, axis=1)
    direct = np.einsum("bja,bjc->bac", increments, matrix @ increments)
    np.testing.assert_allclose(result.blocks, direct, rtol=0, atol=1e-11 * np.abs(direct).max())
    np.testing.assert_allclose(np.trace(matrix) * 2 * dt, 1.0, rtol=1e-12)

    sigma = 2 * dt * D_TRUE
    tr_a2, tr_a4 = np.sum(matrix * matrix), np.sum((matrix @ matrix) ** 2)
    selectors = {"trace": np.eye(3) / 3}
    for a in range(3):
        for b in range(a, 3):
            c = np.zeros((3, 3))
            c[a, b] = c[b, a] = 1.0 if a == b else 0.5
            selectors[(a, b)] = c
    for key, c in selectors.items():
        cs = c @ sigma
        kappa2 = 2 * tr_a2 * np.trace(cs @ cs)
        kappa4 = 48 * tr_a4 * np.trace(cs @ cs @ cs @ cs)
        nu = 2 * kappa2**2 / (kappa4 / n_blocks + 2 * kappa2**2 / (n_blocks - 1))
        error = result.D_scalar_error if key == "trace" else result.D_error[key]
        ratio = n_blocks * error**2 / kappa2
        low, high = stats.chi2.ppf(P_FAIL / 2, nu) / nu, stats.chi2.isf(P_FAIL / 2, nu) / nu
        assert low < ratio < high, (key, ratio, low, high)
        # The check can fail: an error bar wrong by a factor sqrt(2) (ratio 2 or 1/2) is outside.
        assert 0.5 < low and high < 2.0


def _msd_numpy(positions, max_lag):
    """``(B, T, 3) -> (B, max_lag + 1, 3, 3)`` reference MSD tensor: slices, one lag at a time."""
    return np.stack(
        [
            np.mean(np.einsum("bta,btc->btac", d, d), axis=1)
            for d in (positions[:, k:] - positions[:, : positions.shape[1] - k] for k in range(max_lag + 1))
        ],
        axis=1,
    )


def test_segment_protocol_matches_hand_cut_segments():
    # Independent route: cut the segments by hand (NumPy slices, shared end points), average a
    # NumPy MSD over each trajectory's segments, fit each block with np.polyfit. Exact to rounding.
    rng = np.random.default_rng(4)
    dt, steps = 0.1, 10
    positions = _brownian(rng, D_TRUE, 3, 45, dt)  # 4 whole segments of 1 ps, 4 steps left over
    result = diffusion_tensor(positions, dt, fit_window=(0.2, 1.0), segment=1.0)
    expected = np.mean([_msd_numpy(positions[:, s * steps : (s + 1) * steps + 1], steps) for s in range(4)], axis=0)
    np.testing.assert_allclose(result.msd_tensor, expected, rtol=1e-13, atol=1e-15)
    lags = dt * np.arange(2, 11)
    slopes = np.polyfit(lags, expected[:, 2:].transpose(1, 0, 2, 3).reshape(9, -1), 1)[0].reshape(3, 3, 3)
    np.testing.assert_allclose(result.blocks, slopes / 2, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(result.D_error, np.std(slopes / 2, axis=0, ddof=1) / np.sqrt(3), rtol=1e-10)

    # One trajectory: 7 segments in 3 groups of 2 (the 7th dropped), groups are the blocks.
    single = _brownian(rng, D_TRUE, 1, 71, dt)
    grouped = diffusion_tensor(single, dt, fit_window=(0.2, 1.0), segment=1.0, groups=3)
    cut = np.concatenate([_msd_numpy(single[:, s * steps : (s + 1) * steps + 1], steps) for s in range(6)])
    np.testing.assert_allclose(grouped.msd_tensor, cut.reshape(3, 2, 11, 3, 3).mean(axis=1), rtol=1e-13, atol=1e-15)


def test_follow_up_protocol_on_one_long_brownian_trajectory():
    # The follow-up paper's protocol: 12 ps segments fitted over 1-12 ps, on one 17280 ps
    # trajectory saved every 0.2 ps (1440 segments; the paper's 3000 ps give 250), cut into 32
    # groups of 45 segments (Brownian segments are independent, so the groups are). D_scalar
    # within the Student-t tolerance (31 degrees of freedom); error about 3 % expected (5 % for
    # 500 segments, measured), below 5 % with probability 1 - 4e-7.
    rng = np.random.default_rng(5)
    diffusion = 0.04 * np.eye(3) + 0.2 * D_TRUE
    positions = _brownian(rng, diffusion, 1, 1440 * 60 + 1, 0.2)
    result = diffusion_tensor(positions, 0.2, fit_window=(1.0, 12.0), segment=12.0, groups=32)
    assert result.n_blocks == 32
    assert result.D_scalar_error / result.D_scalar < 0.05
    assert abs(result.D_scalar - np.trace(diffusion) / 3) < _t_tol(32) * result.D_scalar_error


# --------------------------------------------------------------------------------------------
# mobility and conductivity


def test_einstein_mobility_against_scipy_constants():
    # Independent route: k_B from scipy (J/K over C -> eV/K, * 1e3 -> meV/K), exact constants.
    np.testing.assert_allclose(BOLTZMANN, KB_SCIPY, rtol=1e-12)
    u, error = einstein_mobility(0.37, 412.0, diffusion_error=0.02)
    np.testing.assert_allclose(u, 0.37 / (KB_SCIPY * 412.0), rtol=1e-12)
    np.testing.assert_allclose(error, 0.02 / (KB_SCIPY * 412.0), rtol=1e-12)
    tensor, none = einstein_mobility(D_TRUE, 300.0)
    assert none is None
    np.testing.assert_allclose(tensor, D_TRUE / (KB_SCIPY * 300.0), rtol=1e-12)


def test_einstein_and_drift_mobility_agree_for_a_brownian_particle():
    # Overdamped Langevin particle with friction gamma: D = k_B T / gamma at equilibrium, drift
    # velocity F / gamma under a constant force, so both routes give u = 1 / gamma (exact linear
    # response for a free particle). Euler-Maruyama is exact here (constant force).
    gamma, temperature = 2.0, 300.0  # meV ps / Å^2, K
    rng = np.random.default_rng(6)
    diffusion = KB_SCIPY * temperature / gamma * np.eye(3)  # 12.9 Å^2/ps
    equilibrium = diffusion_tensor(_brownian(rng, diffusion, *BROWNIAN_SHAPE, 0.01), 0.01, fit_window=(0.05, 0.5))
    einstein, einstein_error = einstein_mobility(equilibrium.D_scalar, temperature, equilibrium.D_scalar_error)

    force = np.array([1.2, -0.8, 1.4])  # meV/Å
    duration, steps = 10.0, 100
    paths = _brownian(rng, diffusion, 4096, steps + 1, duration / steps, drift=force / gamma)
    drift, drift_error = drift_mobility(paths[:, -1] - paths[:, 0], duration, force)

    assert einstein_error * gamma < 0.05 and drift_error * gamma < 0.05
    assert abs(einstein - 1 / gamma) < _t_tol(256) * einstein_error
    assert abs(drift - 1 / gamma) < _t_tol(4096) * drift_error
    assert abs(einstein - drift) < _t_tol(256) * np.hypot(einstein_error, drift_error)


def test_nernst_einstein_against_si_computation():
    # Independent route: everything in SI with scipy's constants. D = 1e-2 Å^2/ps = 1e-10 m^2/s,
    # n = 1e22 cm^-3 = 1e28 m^-3, sigma = n e^2 D / (k_B T) in S/m, / 100 -> S/cm. e and k_B
    # are exact in the 2019 SI, so the two agree to rounding.
    d_si, n_si, temperature = 1e-2 * sc.angstrom**2 / sc.pico, 1e22 / sc.centi**3, 300.0
    sigma_si = n_si * sc.e**2 * d_si / (sc.k * temperature) / 100.0  # S/cm
    sigma, none = nernst_einstein_conductivity(1e-2, temperature, carrier_density=1e22)
    assert none is None
    np.testing.assert_allclose(sigma, sigma_si, rtol=1e-12)
    sigma2, error2 = nernst_einstein_conductivity(1e-2, temperature, 1e22, charge=-2, diffusion_error=1e-3)
    np.testing.assert_allclose(sigma2, 4 * sigma_si, rtol=1e-12)
    np.testing.assert_allclose(error2, 4 * sigma_si * 0.1, rtol=1e-12)


def test_mobility_and_conductivity_under_jit():
    # The functions are traceable (the boundary checks skip tracers): same numbers jitted.
    fn = jax.jit(lambda d: nernst_einstein_conductivity(d, 300.0, 1e22).value + einstein_mobility(d, 300.0).value)
    expected = nernst_einstein_conductivity(0.3, 300.0, 1e22).value + einstein_mobility(0.3, 300.0).value
    np.testing.assert_allclose(fn(0.3), expected, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# Arrhenius fit


TEMPERATURES = np.linspace(400.0, 1000.0, 13)
E_A, D0 = 280.0, 8.0  # meV, Å^2/ps


def test_arrhenius_noise_free_and_two_points():
    # Noise-free data lie on the model: recovered to rounding (1e-10), chi^2 = 0.
    exact = D0 * np.exp(-E_A / (KB_SCIPY * TEMPERATURES))
    fit = arrhenius_fit(TEMPERATURES, exact, 0.03 * exact)
    np.testing.assert_allclose([fit.activation_energy, fit.prefactor], [E_A, D0], rtol=1e-10)
    assert fit.chi2_per_dof < 1e-18 and fit.note == ""
    # Two temperatures: the line through both points; no chi^2.
    pair = arrhenius_fit(TEMPERATURES[[0, -1]], exact[[0, -1]], 0.03 * exact[[0, -1]])
    np.testing.assert_allclose([pair.activation_energy, pair.prefactor], [E_A, D0], rtol=1e-10)
    assert np.isnan(pair.chi2_per_dof) and "2 temperatures" in pair.note


def test_arrhenius_with_noise_against_polyfit_and_statistics():
    # ln D_i = ln D_true + s z_i (multiplicative log-normal noise of known size s = 4 %), so the
    # fit is linear with exactly Gaussian errors of known covariance:
    #  (1) estimate and covariance equal np.polyfit's weighted fit (w = 1/s, cov="unscaled");
    #  (2) over 400 synthetic series, the pulls (E_a - true) / err are N(0, 1): mean within 5/20,
    #      variance within the chi^2_399 quantiles at P_FAIL;
    #  (3) the summed chi^2 over the series is chi^2 with 400 * 11 dof: mean chi^2/dof within its
    #      P_FAIL quantiles, about 1 +- 0.1.
    rng = np.random.default_rng(7)
    s, n_series = 0.04, 400
    exact = D0 * np.exp(-E_A / (KB_SCIPY * TEMPERATURES))
    noisy = exact * np.exp(s * rng.standard_normal((n_series, TEMPERATURES.size)))
    fits = [arrhenius_fit(TEMPERATURES, d, s * d) for d in noisy]

    x = -1.0 / (KB_SCIPY * TEMPERATURES)
    coef, cov = np.polyfit(x, np.log(noisy[0]), 1, w=np.full(x.size, 1 / s), cov="unscaled")
    np.testing.assert_allclose([fits[0].activation_energy, np.log(fits[0].prefactor)], coef, rtol=1e-10)
    np.testing.assert_allclose(fits[0].covariance, cov[::-1, ::-1], rtol=1e-10)
    np.testing.assert_allclose(fits[0].prefactor_error, fits[0].prefactor * np.sqrt(cov[1, 1]), rtol=1e-10)

    error = fits[0].activation_energy_error
    assert error / E_A < 0.05
    assert abs(fits[0].activation_energy - E_A) < 5 * error
    pulls = np.array([f.activation_energy - E_A for f in fits]) / error
    assert abs(pulls.mean()) < 5 / np.sqrt(n_series)
    dof = n_series - 1
    assert stats.chi2.ppf(P_FAIL / 2, dof) / dof < pulls.var(ddof=1) < stats.chi2.isf(P_FAIL / 2, dof) / dof
    total_dof = n_series * (TEMPERATURES.size - 2)
    chi2 = np.mean([f.chi2_per_dof for f in fits])
    assert stats.chi2.ppf(P_FAIL / 2, total_dof) / total_dof < chi2 < stats.chi2.isf(P_FAIL / 2, total_dof) / total_dof


# --------------------------------------------------------------------------------------------
# kinetic temperature


def test_kinetic_temperature_exact_and_maxwell_boltzmann():
    mass, temperature = 0.7, 350.0  # meV ps^2 / Å^2, K
    # Exact: speeds +-c on every axis give M c^2 / 2 per axis, T = M c^2 / k_B.
    c = np.array([2.0, 3.0, 4.0])
    signs = np.where(np.arange(64 * 256 * 3).reshape(64, 256, 3) % 2 == 0, 1.0, -1.0)  # shape reused below
    exact = kinetic_temperature(signs * c, mass)
    np.testing.assert_allclose(exact.energy, mass * c**2 / 2, rtol=1e-14)
    np.testing.assert_allclose(exact.temperature, mass * np.mean(c**2) / KB_SCIPY, rtol=1e-12)
    np.testing.assert_allclose(exact.energy_error, 0.0, atol=1e-14)

    # Maxwell-Boltzmann: v_a ~ N(0, k_B T / M); 64 trajectories of 256 samples (1.1 % error per axis).
    rng = np.random.default_rng(8)
    velocities = np.sqrt(KB_SCIPY * temperature / mass) * rng.standard_normal((64, 256, 3))
    result = kinetic_temperature(velocities, mass)
    tol = _t_tol(64)
    assert np.all(result.temperature_axes_error / temperature < 0.05)
    np.testing.assert_array_less(np.abs(result.temperature_axes - temperature), tol * result.temperature_axes_error)
    assert abs(result.temperature - temperature) < tol * result.temperature_error
    np.testing.assert_allclose(result.energy, KB_SCIPY * result.temperature_axes / 2, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# bad input

_WALK = np.cumsum(np.ones((2, 11, 3)), axis=1)
_NAN_WALK = np.where(np.arange(11)[None, :, None] == 4, np.nan, _WALK)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: block_mean(np.ones((1, 3))), "samples"),
        (lambda: block_mean([1.0, np.nan, 2.0]), "samples"),
        (lambda: mean_squared_displacement(np.ones((2, 11, 2)), 0.1, 3), "positions"),
        (lambda: mean_squared_displacement(_NAN_WALK, 0.1, 3), "positions"),
        (lambda: mean_squared_displacement(_WALK, -0.1, 3), "dt"),
        (lambda: mean_squared_displacement(_WALK, 0.1, 11), "max_lag"),
        (lambda: diffusion_tensor(_WALK[:1], 0.1, (0.1, 0.5)), "positions"),
        (lambda: diffusion_tensor(_WALK, 0.1, (0.1, 2.0)), "fit_window"),
        (lambda: diffusion_tensor(_WALK, 0.1, (0.5, 0.2)), "fit_window"),
        (lambda: diffusion_tensor(_WALK, 0.1, (0.11, 0.19)), "fit_window"),
        (lambda: diffusion_tensor(_WALK, 0.1, (0.1, 0.6), segment=0.5), "fit_window"),
        (lambda: diffusion_tensor(_WALK, 0.1, (0.1, 0.3), segment=0.25), "segment"),
        (lambda: diffusion_tensor(_WALK[:1], 0.1, (0.1, 0.3), segment=0.5), "groups"),
        (lambda: einstein_mobility(0.1, -300.0), "temperature"),
        (lambda: einstein_mobility(np.nan, 300.0), "diffusion"),
        (lambda: drift_mobility(np.ones((1, 3)), 1.0, [1.0, 0, 0]), "displacements"),
        (lambda: drift_mobility(np.ones((4, 3)), 1.0, [1.0, 0]), "force"),
        (lambda: drift_mobility(np.ones((4, 3)), 0.0, [1.0, 0, 0]), "duration"),
        (lambda: drift_mobility(np.ones((4, 3)), 1.0, [0.0, 0, 0]), "force"),
        (lambda: nernst_einstein_conductivity(0.1, 300.0, -1e22), "carrier_density"),
        (lambda: nernst_einstein_conductivity(0.1, 0.0, 1e22), "temperature"),
        (lambda: arrhenius_fit([300.0], [1.0], [0.1]), "temperatures"),
        (lambda: arrhenius_fit([300.0, 400.0], [1.0, np.nan], [0.1, 0.1]), "diffusion"),
        (lambda: arrhenius_fit([300.0, 300.0], [1.0, 1.1], [0.1, 0.1]), "temperatures"),
        (lambda: kinetic_temperature(np.ones((1, 5, 3)), 0.7), "velocities"),
        (lambda: kinetic_temperature(np.ones((2, 5, 3)), -0.7), "mass"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
