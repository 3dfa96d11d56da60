"""One entry point for trajectories, whatever the level of description.

``method`` selects the dynamics:

* ``"full"``: the whole periodic lattice plus the ion (Eqs. 3-4), ``jaxion.full``;
* ``"kernel"``: the lattice integrated out exactly into a memory kernel, ``jaxion.kernel``;
* ``"local"``: the ion alone with softened potential and drag tensor (Eq. 26), ``jaxion.local``.

Each method module provides ``simulate(system, position, velocity, t1, *, stop_z=None, **options)``
returning a :class:`Trajectory`; ``stop_z`` ends the run when the ion's z coordinate reaches it.
"""

import importlib
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from .system import System

METHODS = ("full", "kernel", "local")
# Default warning threshold of the energy drift, relative to the energy scale of the run (see
# Trajectory.energy_drift); pass drift_tol to simulate / single_pass to change it, None to silence it.
DRIFT_TOL = 1e-4
# A single-pass loss below this many units of rounding of the initial kinetic energy is not resolved.
RESOLVED_ULPS = 100.0
# Steps per range crossing below which a fixed step cannot follow the force pulse (local and kernel).
STEPS_PER_RANGE = 4


class FiniteBoxWarning(UserWarning):
    """Sound crossing a finite periodic lattice returns to the ion within the run."""


class EnergyDriftWarning(UserWarning):
    """A run's energy drifted more than its tolerance (``drift_tol``): the step is too large for it."""


class PrecisionWarning(UserWarning):
    """A result is below what the floating-point precision of the run resolves (e.g. float32)."""


class IncompletePassError(RuntimeError):
    """A single pass did not complete (the ion was reflected or trapped), with ``incomplete="raise"``."""


class Trajectory(eqx.Module):
    """An ion trajectory saved at times ``ts``.

    Attributes:
        ts: ``(T,)`` save times (periods); ``inf`` past an early stop.
        position: ``(T, 3)`` ion position ``sigma``.
        velocity: ``(T, 3)`` ion velocity ``sigma'``.
        energy: ``(T,)`` total energy of the description (conserved for "full" and "kernel",
            decaying under drag for "local").
        site_displacement: ``(T, S, 3)`` displacements of the interacting sites, or ``None``.
        t_final, position_final, velocity_final, energy_final: the state where the run ended
            (at ``t1`` or at the stop).
        conservative: static; ``True`` when ``energy`` should be conserved ("full", "kernel"),
            ``False`` when it decays under drag ("local").

    ``energy_drift`` (a property) is the integration's energy error.
    """

    ts: jax.Array
    position: jax.Array
    velocity: jax.Array
    energy: jax.Array
    t_final: jax.Array
    position_final: jax.Array
    velocity_final: jax.Array
    energy_final: jax.Array
    site_displacement: jax.Array | None = None
    conservative: bool = eqx.field(static=True, default=True)

    @property
    def energy_drift(self):
        """Energy error of the integration, per run (shape of ``t_final``): the largest
        ``|E(t) - E(0)|`` over the reached save times and the end for a conservative description;
        for a dissipative one (drag only removes energy) the largest rise ``max(E(t) - E(0), 0)``."""
        energy = jnp.concatenate([self.energy, self.energy_final[..., None]], axis=-1)
        reached = jnp.concatenate([jnp.isfinite(self.ts), jnp.ones_like(self.t_final, dtype=bool)[..., None]], axis=-1)
        change = energy - self.energy[..., :1]
        change = jnp.abs(change) if self.conservative else jnp.maximum(change, 0.0)
        return jnp.max(jnp.where(reached, change, 0.0), axis=-1)

    def energy_scale(self):
        """``|E(0)|`` per run: what :func:`check_energy_drift` compares the drift with."""
        return jnp.abs(self.energy[..., 0])


class NonFiniteTrajectoryError(FloatingPointError):
    """An integration produced NaN or infinite values (raised instead of returning them)."""


def require_finite_trajectory(trajectory):
    """Raise :class:`NonFiniteTrajectoryError` if a concrete trajectory (single or batched) has NaN
    or infinite states at its reached save times or at its end; traced trajectories pass through."""
    if not _checks.is_concrete(trajectory):
        return
    reached = np.isfinite(np.asarray(trajectory.ts))
    states = {
        "position": np.asarray(trajectory.position)[reached],
        "velocity": np.asarray(trajectory.velocity)[reached],
        "final position": np.asarray(trajectory.position_final),
        "final velocity": np.asarray(trajectory.velocity_final),
        "final energy": np.asarray(trajectory.energy_final),
    }
    bad = [name for name, value in states.items() if not np.all(np.isfinite(value))]
    if bad:
        ts = np.where(reached, np.asarray(trajectory.ts), np.nan)
        first = np.nonzero(~np.all(np.isfinite(np.asarray(trajectory.position)), axis=-1) & reached)
        when = f" (first at tau = {float(ts[first][0]):.6g})" if first[0].size else ""
        raise NonFiniteTrajectoryError(
            f"the integration produced non-finite values in the {', '.join(bad)}{when}: the ion met a singular "
            "potential (e.g. Yukawa at r = 0: pass beside the sites, not through them), or the time step is too "
            "large for the forces met; use a smaller dt (or an adaptive solver) or a softer potential"
        )


def check_energy_drift(trajectory, drift_tol=DRIFT_TOL):
    """Warn (:class:`EnergyDriftWarning`) when a concrete trajectory's ``energy_drift`` exceeds
    ``drift_tol`` times its energy scale ``|E(0)|`` (any member of a batch); ``None`` disables it."""
    if drift_tol is None or not _checks.is_concrete(trajectory):
        return
    _checks.require_positive("drift_tol", drift_tol)
    drift = np.asarray(trajectory.energy_drift)
    relative = drift / np.maximum(np.asarray(trajectory.energy_scale()), np.finfo(float).tiny)
    if np.any(~(relative <= drift_tol)):
        warnings.warn(
            f"the energy drifted by {float(np.max(drift)):.3g} ({float(np.max(relative)):.2g} of |E(0)|, tolerance "
            f"drift_tol={drift_tol:g}): the time step is too large for the forces met; use a smaller dt (the result "
            "is not reliable where the drift is not far below the quantity of interest)",
            EnergyDriftWarning,
            stacklevel=3,
        )


def curvature_met(system, position, velocity, duration, points=257):
    """Largest pair-potential curvatures along the straight path ``position + velocity t``,
    ``0 <= t <= duration`` (concrete inputs; ``None`` when traced).

    Returns:
        ``(site, ion)``: the largest ``|eigenvalue|`` of one pair term's Hessian (what an
        interacting site feels) and of their sum ``H(sigma)`` (what the ion feels).
    """
    if not _checks.is_concrete(system, position, velocity, duration):
        return None
    t = jnp.linspace(0.0, float(duration), points)[:, None]
    sigma = jnp.asarray(position, dtype=float) + t * jnp.asarray(velocity, dtype=float)
    return tuple(float(value) for value in _curvatures(system, sigma))


@eqx.filter_jit
def _curvatures(system, sigma):
    """Largest ``|eigenvalue|`` of the pair Hessians and of their sum over the sites, at ``sigma (P, 3)``."""
    separations = system.site_positions()[None, :, :] - sigma[:, None, :]  # (P, S, 3)
    pair = jax.vmap(jax.vmap(jax.hessian(system.potential)))(separations)  # (P, S, 3, 3)
    site = jnp.max(jnp.abs(jnp.linalg.eigvalsh(pair)))
    ion = jnp.max(jnp.abs(jnp.linalg.eigvalsh(jnp.sum(pair, axis=1))))
    return site, ion


def run_duration(position, velocity, t1, stop_z=None):
    """The straight-path duration of a run: ``t1``, or the time to reach ``stop_z`` if shorter."""
    duration = float(t1)
    if stop_z is not None and _checks.is_concrete(position, velocity, stop_z) and float(velocity[2]) > 0:
        duration = min(duration, (float(stop_z) - float(position[2])) / float(velocity[2]))
    return duration


def require_step(system, position, velocity, duration, dt, bound, what, lattice_omega=None, per_range=None):
    """``ValueError`` when a fixed step ``dt`` cannot follow the forces the run meets (concrete inputs).

    * stability: ``2 pi omega dt < bound`` with ``omega^2 = max(lattice_omega^2 + c_site / m,
      c_ion / mu_min)``, the highest frequency of the framework's sites (left out when
      ``lattice_omega`` is ``None``: the ion alone is integrated) and of the ion, including the
      pair curvatures met along the straight path (:func:`curvature_met`);
    * resolution (if ``per_range``): at least ``per_range`` steps per crossing of the potential's
      range at the starting speed, ``dt |v| <= range / per_range``.
    """
    curvature = curvature_met(system, position, velocity, duration)
    if curvature is None:
        return
    site, ion = curvature
    mobile = np.asarray(system.mass)[np.isfinite(np.asarray(system.mass))]
    sites = 0.0 if lattice_omega is None else lattice_omega**2 + site / float(system.lattice.mass)
    omega = math.sqrt(max(sites, ion / float(np.min(mobile))))
    if 2.0 * math.pi * omega * dt >= bound:
        lattice = "" if lattice_omega is None else f"of the lattice ({lattice_omega:.4g}) "
        raise ValueError(
            f"dt={dt:g} is too large for {what} with the forces met: the highest frequency {lattice}with the "
            f"ion-site curvature along the path (sites {site:.3g}, ion {ion:.3g}) is omega={omega:.4g}, and the "
            f"step is stable only for 2 pi omega dt < {bound:.3g}, i.e. dt < {bound / (2.0 * math.pi * omega):.3g}"
        )
    speed = float(np.linalg.norm(np.asarray(velocity)))
    reach = float(system.potential.range)
    if per_range is not None and dt * speed > reach / per_range:
        raise ValueError(
            f"dt={dt:g} is too large for {what}: at speed {speed:.3g} the ion crosses the potential's range "
            f"({reach:.3g}) in {reach / speed:.3g} periods, and the force pulse needs at least {per_range} steps "
            f"per range, i.e. dt <= {reach / (per_range * speed):.3g}"
        )


class SinglePass(eqx.Module):
    """Result of the paper's single-pass protocol.

    Attributes:
        speed: initial speed(s) ``v0``.
        loss: ``Delta = mu (v0^2 - v_end^2) / (8 pi^2)``, same shape as ``speed``; ``nan`` where
            the pass did not complete.
        completed: booleans, same shape as ``speed``: the ion reached the end plane moving forward
            (``False``: reflected or trapped within the run).
        trajectory: the :class:`Trajectory` (batched over speeds if ``speed`` was an array); its
            ``energy_drift`` is the integration error to compare the loss with.
    """

    speed: jax.Array
    loss: jax.Array
    completed: jax.Array
    trajectory: Trajectory


def _method_module(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return importlib.import_module(f"jaxion.{method}")


def _require_system(system):
    """``ValueError`` unless ``system`` is a :class:`~jaxion.system.System`."""
    if not isinstance(system, System):
        raise ValueError(f"system must be a jaxion System, got {type(system).__name__}")


def simulate(system, position, velocity, t1, method="full", drift_tol=DRIFT_TOL, **options):
    """Integrate the ion's motion from ``position``, ``velocity`` (each ``(3,)``) for ``t1`` periods.

    Options are passed to the method (see ``jaxion.full.simulate`` etc.: ``size``, ``dt``,
    ``solver``, ``n_save``, ...). Returns a :class:`Trajectory`.

    Raises ``ValueError`` (or, for traced inputs, a run-time error with the same message) for an
    invalid system or non-finite start, a step too large for the forces met (fixed steps), and
    :class:`NonFiniteTrajectoryError` if the integration blew up; warns
    (:class:`EnergyDriftWarning`) when ``trajectory.energy_drift`` exceeds ``drift_tol`` of ``|E(0)|``.
    """
    position = jnp.asarray(position, dtype=float)
    velocity = jnp.asarray(velocity, dtype=float)
    _checks.require_shape("position", position, (3,))
    _checks.require_shape("velocity", velocity, (3,))
    _checks.require_positive("t1", t1)
    _require_system(system)
    problems = [_checks.finite("position", position), _checks.finite("velocity", velocity)]
    system, position, velocity = _checks.enforce((system, position, velocity), _checks.problems_of(system) + problems)
    trajectory = _method_module(method).simulate(system, position, velocity, t1, **options)
    require_finite_trajectory(trajectory)
    check_energy_drift(trajectory, drift_tol)
    return trajectory


def pass_geometry(system, start, margin=7.0):
    """Start and end of a single pass along z (physics.md section 3).

    The ion starts ``margin * range`` before the lowest plane of interacting sites and stops
    ``margin * range`` past the highest one, at transverse position ``start = (x, y)``.

    Returns:
        ``(initial_position (3,), stop_z)``.
    """
    z = system.site_positions()[:, 2]
    reach = margin * system.potential.range
    start = jnp.asarray(start, dtype=float)
    _checks.require_shape("start", start, (2,))
    return jnp.concatenate([start, (jnp.min(z) - reach)[None]]), jnp.max(z) + reach


def pass_completed(trajectory, stop_z):
    """Booleans (per run): the ion ended at or past the plane ``stop_z`` moving forward along z."""
    z_end = trajectory.position_final[..., 2]
    tolerance = 1e-6 * (1.0 + jnp.abs(stop_z))
    return (z_end >= stop_z - tolerance) & (trajectory.velocity_final[..., 2] > 0)


def check_precision(loss, initial_kinetic, dtype):
    """Warn (:class:`PrecisionWarning`) where a concrete single-pass loss, a difference of kinetic
    energies, is within ``RESOLVED_ULPS`` roundings of a low-precision ``dtype`` (float32 or less)
    of the initial kinetic energy (float32: ~1e-5 of it), where its size and even its sign are not
    resolved."""
    if not _checks.is_concrete(loss, initial_kinetic) or jnp.finfo(dtype).eps < 1e-10:
        return  # float64 resolves 2e-14 of the kinetic energy, below the losses of interest
    floor = RESOLVED_ULPS * float(jnp.finfo(dtype).eps) * np.asarray(initial_kinetic)
    loss = np.asarray(loss)
    unresolved = np.isfinite(loss) & (np.abs(loss) < floor)
    if np.any(unresolved):
        warnings.warn(
            f"{int(np.sum(unresolved))} single-pass loss(es) are below what {jnp.dtype(dtype).name} resolves "
            f"({RESOLVED_ULPS:g} x eps x initial kinetic energy = {float(np.max(floor)):.3g}): their size and sign "
            "are rounding; run in float64 or use loss_perturbative",
            PrecisionWarning,
            stacklevel=3,
        )


def single_pass(system, speed, start=(0.0, 0.0), method="full", margin=7.0, slowdown=4.0, incomplete="nan",
                drift_tol=DRIFT_TOL, **options):
    """The paper's single-pass loss: ion starts ``margin`` ranges before the interacting sites with
    speed ``v0`` along z, stops ``margin`` ranges past them; ``Delta = mu_z (v0^2 - v_end^2) / 8 pi^2``.

    Args:
        system: the :class:`~jaxion.System`; its z axis must be mobile.
        speed: scalar or ``(K,)`` speeds (concrete); a batch runs as one vectorised computation.
        start: transverse position ``(x, y)`` of the straight path.
        method: "full", "kernel" or "local".
        margin: start/stop distance in units of the potential's range.
        slowdown: the run is given ``slowdown`` times the straight-line crossing time before the
            ion is declared trapped.
        incomplete: what a pass that did not complete (reflected or trapped ion) gives: ``"nan"``
            (default: ``loss`` is ``nan`` there and ``completed`` is ``False``) or ``"raise"``
            (:class:`IncompletePassError`).
        drift_tol: warn (:class:`EnergyDriftWarning`) when a run's energy drift exceeds this
            fraction of its initial energy; ``None`` to silence.
        **options: passed to the method.

    Warns :class:`PrecisionWarning` where a loss is below what the run's precision resolves
    (float32 runs: ``dtype=jnp.float32`` or ``jax_enable_x64`` off).
    """
    if incomplete not in ("nan", "raise"):
        raise ValueError(f"incomplete must be 'nan' or 'raise', got {incomplete!r}")
    speed = jnp.asarray(speed, dtype=float)
    _checks.require_positive("speed", speed)
    _require_system(system)
    if _checks.is_concrete(system.mass) and np.isinf(np.asarray(system.mass)[2]):
        raise ValueError("single_pass moves the ion along z, but the ion's z mass is infinite (pinned)")
    position, stop_z = pass_geometry(system, start, margin)
    problems = _checks.problems_of(system) + [_checks.finite("start", position), system.path_problem(position[:2])]
    system, position = _checks.enforce((system, position), problems)
    slowest = float(np.min(np.asarray(speed))) if _checks.is_concrete(speed) else None
    if slowest is None:
        raise ValueError("single_pass needs concrete speeds to size the run; vmap over it with jax.vmap on simulate")
    # the duration only sizes the run: no derivative flows through it (width, spacing may be traced)
    t1 = slowdown * float(jax.lax.stop_gradient(stop_z - position[2])) / slowest
    module = _method_module(method)
    fastest = jnp.array([0.0, 0.0, float(np.max(np.asarray(speed)))])
    module.check_step(system, position, fastest, t1, stop_z=stop_z, **options)

    def run(v0):
        velocity = jnp.array([0.0, 0.0, 1.0]) * v0
        return module.simulate(system, position, velocity, t1, stop_z=stop_z, **options)

    # The run length t1 is only an upper bound (slowdown x the crossing time of the slowest ion); a
    # method with a finite box warns about returning sound from the runs' actual durations instead.
    check_sound_return = getattr(module, "check_sound_return", None)
    with warnings.catch_warnings():
        if check_sound_return is not None:
            warnings.simplefilter("ignore", FiniteBoxWarning)
        trajectory = run(speed) if speed.ndim == 0 else jax.vmap(run)(speed)
    require_finite_trajectory(trajectory)
    if check_sound_return is not None and _checks.is_concrete(trajectory.t_final):
        check_sound_return(system, float(jnp.max(trajectory.t_final)), **options)
    check_energy_drift(trajectory, drift_tol)
    completed = pass_completed(trajectory, stop_z)
    if incomplete == "raise" and _checks.is_concrete(completed) and not np.all(np.asarray(completed)):
        raise IncompletePassError(
            f"the pass did not complete at speed(s) {np.asarray(speed)[~np.asarray(completed)].tolist()}: the ion was "
            "reflected or trapped within the run (slowdown x the crossing time); no single-pass loss exists"
        )
    initial_kinetic = system.ion_kinetic_energy(jnp.stack([jnp.zeros_like(speed)] * 2 + [speed], axis=-1))
    loss = jnp.where(completed, initial_kinetic - system.ion_kinetic_energy(trajectory.velocity_final), jnp.nan)
    check_precision(loss, initial_kinetic, options.get("dtype", jnp.result_type(float)))
    return SinglePass(speed=speed, loss=loss, completed=completed, trajectory=trajectory)
