"""The trapped-ion protocol (physics.md section 6, the paper's Fig. 6): a timed run and the
analysis of an ion rattling between framework sites while the lattice drains its energy.

An ion too slow to climb the barriers on either side oscillates about a trap centre ``z0`` and
loses energy to the framework at every pass. Its kinetic energy at the trap centre,

    E_n = mu v_n^2 / (8 pi^2)          (units of hbar Omega, ``v_n`` in l per period),

taken at the ``n``-th upward crossing of ``z = z0`` (where the potential energy is the same for
every description: full lattice, memory kernel, time-local), measures what is left. Reported per
trajectory (:func:`cycle_analysis`): the mean period between upward crossings, the energy decay
per cycle ``r`` of the geometric fit ``E_n ~ A r^n`` (:func:`geometric_ratio`), the amplitude
decay per cycle (half the peak-to-peak ``z`` within each cycle, fitted the same way), and the
crossing energies themselves.

Crossings (:func:`upward_crossings`): on a saved grid ``t_i`` (step ``h_i``) with positions
``z_i`` and velocities ``v_i``, the crossing in ``[t_i, t_{i+1}]`` is the root ``s in [0, 1]`` of
the cubic Hermite interpolant

    z(s) = h00(s) z_i + h01(s) z_{i+1} + h10(s) h_i v_i + h11(s) h_i v_{i+1} = z0,
    h00 = 2 s^3 - 3 s^2 + 1,  h01 = 3 s^2 - 2 s^3,  h10 = s^3 - 2 s^2 + s,  h11 = s^3 - s^2,

found by 8 Newton steps from the linear estimate; the crossing speed is ``z'(s) / h_i``. Its
error is ``O(h^4)``; linear interpolation of ``v`` would be off by ``~h^2 |v''| / 8`` (a few 1e-3
at ``h = 0.01`` for the Fig. 6 ion).
"""

import time

import jax
import numpy as np

from .simulation import simulate

NEWTON_STEPS = 8
SAVED = ("ts", "position", "velocity", "energy")


def upward_crossings(ts, z, vz, center):
    """Times and speeds of the upward crossings of ``z = center`` (module docstring: cubic Hermite
    interpolant of ``z`` through the saved positions and velocities, error ``O(h^4)``).

    Args:
        ts, z, vz: ``(T,)`` save times, positions and velocities along the axis (non-finite times,
            the saves after a stop, are dropped).
        center: the plane crossed.

    Returns:
        ``(times (C,), speeds (C,))``; a save exactly at ``center`` moving up counts as a crossing.
    """
    ts, z, vz = (np.asarray(a, dtype=float) for a in (ts, z, vz))
    ok = np.isfinite(ts)
    ts, z, vz = ts[ok], z[ok], vz[ok]
    up = np.nonzero((z[:-1] <= center) & (z[1:] > center))[0]
    h = ts[up + 1] - ts[up]
    z0, z1, v0, v1 = z[up], z[up + 1], h * vz[up], h * vz[up + 1]
    s = (center - z0) / (z1 - z0)

    def slope(s):
        return (6 * s**2 - 6 * s) * (z0 - z1) + (3 * s**2 - 4 * s + 1) * v0 + (3 * s**2 - 2 * s) * v1

    for _ in range(NEWTON_STEPS):
        value = (2 * s**3 - 3 * s**2 + 1) * z0 + (3 * s**2 - 2 * s**3) * z1
        value = value + (s**3 - 2 * s**2 + s) * v0 + (s**3 - s**2) * v1
        s = np.clip(s - (value - center) / slope(s), 0.0, 1.0)
    return ts[up] + s * h, slope(s) / h


def geometric_ratio(values):
    """Per-step ratio ``r`` of the least-squares fit ``ln values_n = ln A + n ln r``; ``nan`` with fewer
    than 2 values or any value ``<= 0``."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.any(values <= 0):
        return float("nan")
    return float(np.exp(np.polyfit(np.arange(len(values)), np.log(values), 1)[0]))


def cycle_analysis(ts, position, velocity, center, mass=1.0, axis=2):
    """Period, energy and amplitude decay per cycle of a trapped trajectory (module docstring).

    Args:
        ts: ``(T,)`` save times; position, velocity: ``(T, 3)`` (or ``(T,)`` along ``axis``).
        center: the trap centre ``z0`` along ``axis``.
        mass: the ion's mass ``mu`` along ``axis`` (units of ``m``).

    Returns:
        dict: ``cycles`` (upward crossings - 1), ``period`` (mean interval), ``first_periods`` (up to
        3), ``energy_ratio_per_cycle``, ``amplitude_ratio_per_cycle`` and ``kinetic_at_crossings``
        (``E_n``); ``nan`` where fewer than two crossings (or cycles) exist.
    """
    ts = np.asarray(ts, dtype=float)
    z, vz = (np.asarray(a, dtype=float) for a in (position, velocity))
    z, vz = (a[:, axis] if a.ndim == 2 else a for a in (z, vz))
    times, speeds = upward_crossings(ts, z, vz, center)
    kinetic = mass * speeds**2 / (8.0 * np.pi**2)
    amplitudes = [0.5 * np.ptp(z[(ts >= a) & (ts < b)]) for a, b in zip(times[:-1], times[1:])]
    return dict(
        cycles=int(max(len(times) - 1, 0)),
        period=float(np.mean(np.diff(times))) if len(times) > 1 else float("nan"),
        first_periods=[float(p) for p in np.diff(times)[:3]],
        energy_ratio_per_cycle=geometric_ratio(kinetic),
        amplitude_ratio_per_cycle=geometric_ratio(amplitudes),
        kinetic_at_crossings=[float(k) for k in kinetic],
    )


def z_difference(data, reference, axis=2):
    """Differences of ``data``'s positions from ``reference``'s along ``axis`` at ``reference``'s
    finite save times (``data`` linearly interpolated; exact where the save grids coincide).

    Args:
        data, reference: dicts with ``ts (T,)`` and ``position (T, 3)`` (as :func:`timed_run`).

    Returns:
        dict with ``max`` ``= max |z - z_ref|`` and ``rms`` ``= sqrt(mean (z - z_ref)^2)``.
    """
    ok, mine = np.isfinite(reference["ts"]), np.isfinite(data["ts"])
    z = np.interp(reference["ts"][ok], data["ts"][mine], data["position"][mine, axis])
    difference = z - reference["position"][ok, axis]
    return dict(max=float(np.max(np.abs(difference))), rms=float(np.sqrt(np.mean(difference**2))))


def timed_run(system, position, velocity, t1, **options):
    """``jaxion.simulate(system, position, velocity, t1, **options)`` timed to completion.

    Returns:
        ``(trajectory, data)``: the :class:`~jaxion.Trajectory` and a dict of NumPy arrays ``ts (T,)``,
        ``position``, ``velocity (T, 3)``, ``energy (T,)`` and ``wall_seconds`` (compilation included).
    """
    began = time.perf_counter()
    trajectory = jax.block_until_ready(simulate(system, position, velocity, t1, **options))
    data = {key: np.asarray(getattr(trajectory, key)) for key in SAVED}
    data["wall_seconds"] = time.perf_counter() - began
    return trajectory, data
