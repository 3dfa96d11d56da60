"""The trapped-ion analysis (jaxion.trapped) against a damped oscillation known in closed form, and the
Fig. 6 setup shared by the notebooks, the benchmarks and ``jaxion figure 6``."""

import numpy as np
import pytest

from jaxion import experiments, trapped

CENTER, AMPLITUDE, OMEGA, GAMMA, PHASE = 7.0, 0.9, 2 * np.pi / 0.8, 0.3, 1.0  # z0, A, omega, decay rate, phase


def damped(h, t1=6.0):
    """``z = z0 + A exp(-gamma t) sin(omega t + phase)`` saved every ``h``: upward crossings of ``z0`` at
    ``t_k = (2 pi k - phase) / omega``, ``k = 1, 2, ...`` (between saves), with speed ``A omega exp(-gamma t_k)``."""
    ts = np.arange(int(round(t1 / h)) + 1) * h
    envelope = AMPLITUDE * np.exp(-GAMMA * ts)
    z = CENTER + envelope * np.sin(OMEGA * ts + PHASE)
    vz = envelope * (OMEGA * np.cos(OMEGA * ts + PHASE) - GAMMA * np.sin(OMEGA * ts + PHASE))
    return ts, z, vz


def exact_crossings(count):
    times = (2 * np.pi * np.arange(1, count + 1) - PHASE) / OMEGA
    return times, AMPLITUDE * OMEGA * np.exp(-GAMMA * times)


def test_crossings_match_the_closed_form():
    """Hermite crossings (error O(h^4) in time, O(h^3) in speed, with constants that depend on where in the
    save interval the crossing falls): at h = 0.01 (the notebooks' save step) the times are within 1e-8
    (measured 1.3e-9) and the speeds within 2e-6 relative (measured 6e-7), where linear interpolation of the
    speed would err by up to (omega h)^2 / 8 = 8e-4; at h = 0.04, 1e-6 and 5e-5 (measured 8e-8, 1.6e-5)."""
    for h, time_tol, speed_tol in ((0.04, 1e-6, 5e-5), (0.01, 1e-8, 2e-6)):
        ts, z, vz = damped(h)
        times, speeds = trapped.upward_crossings(ts, z, vz, CENTER)
        exact_t, exact_v = exact_crossings(7)  # t_7 = 5.47, t_8 = 6.27 > 6
        assert len(times) == 7
        assert np.max(np.abs(times - exact_t)) < time_tol
        assert np.max(np.abs(speeds / exact_v - 1)) < speed_tol


def test_cycle_analysis_of_a_damped_oscillation():
    """Period ``2 pi / omega``, kinetic energy ratio per cycle ``exp(-2 gamma T)``, amplitude ratio close to
    ``exp(-gamma T)`` (half the peak-to-peak on the save grid: its error is ~(omega h)^2 / 8 ~ 3e-3 of the
    amplitude, but nearly the same fraction every cycle, so the ratio agrees to 1e-3)."""
    ts, z, vz = damped(0.01)
    result = trapped.cycle_analysis(ts, np.stack([0 * z, 0 * z, z], -1), np.stack([0 * z, 0 * z, vz], -1), CENTER)
    period = 2 * np.pi / OMEGA
    assert result["cycles"] == 6 and len(result["kinetic_at_crossings"]) == 7
    np.testing.assert_allclose(result["period"], period, rtol=1e-8)
    np.testing.assert_allclose(result["first_periods"], [period] * 3, rtol=1e-7)
    np.testing.assert_allclose(result["energy_ratio_per_cycle"], np.exp(-2 * GAMMA * period), rtol=1e-7)
    np.testing.assert_allclose(result["amplitude_ratio_per_cycle"], np.exp(-GAMMA * period), rtol=1e-3)
    kinetic = exact_crossings(7)[1] ** 2 / (8 * np.pi**2)
    np.testing.assert_allclose(result["kinetic_at_crossings"], kinetic, rtol=4e-6)  # twice the speed's tolerance


def test_stopped_saves_and_short_runs():
    """Saves after a stop (``ts = inf``) are dropped; fewer than two crossings give ``nan``, not an error."""
    ts, z, vz = damped(0.01, t1=2.0)
    ts[100:] = np.inf  # stopped at t = 1: one crossing (t_1 = 0.67) before, one (t_2 = 1.47) after
    result = trapped.cycle_analysis(ts, z, vz, CENTER)
    assert result["cycles"] == 0 and len(result["kinetic_at_crossings"]) == 1
    assert np.isnan(result["period"]) and np.isnan(result["energy_ratio_per_cycle"])
    assert np.isnan(trapped.geometric_ratio([1.0, -1.0])) and trapped.geometric_ratio([2.0, 1.0]) == pytest.approx(0.5)


def test_z_difference():
    """Exact on a common grid; interpolated otherwise (here a constant offset: exact too)."""
    ts, z, vz = damped(0.01)
    data = dict(ts=ts, position=np.stack([0 * z, 0 * z, z], -1))
    other = dict(ts=ts[::3], position=data["position"][::3] + 0.25)
    assert trapped.z_difference(data, data) == dict(max=0.0, rms=0.0)
    np.testing.assert_allclose(list(trapped.z_difference(data, other).values()), [0.25, 0.25], rtol=1e-12)


def test_fig6_setup_is_the_papers():
    setup = experiments.fig6_setup()
    assert setup.system.sites == tuple((0, 0, j) for j in range(8)) and setup.center == 7.0
    np.testing.assert_array_equal(setup.position, [0.0, 0.0, 7.0])
    np.testing.assert_array_equal(setup.velocity, [0.0, 0.0, 7.5])
    kinetic = float(setup.system.ion_kinetic_energy(setup.velocity))
    assert kinetic == pytest.approx(0.7124, abs=1e-4) and kinetic < float(setup.system.potential.phi0)
