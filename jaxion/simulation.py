"""One entry point for trajectories, whatever the level of description: the protocols.

``method`` names the description (the one table of names, ``DESCRIPTIONS``):

* ``"full"``: the whole periodic lattice plus the ion (Eqs. 3-4), :class:`jaxion.full.FullDynamics`;
* ``"kernel"``: the lattice integrated out exactly into a memory kernel, :class:`jaxion.kernel.KernelDynamics`;
* ``"local"``: the ion alone with softened potential and drag tensor (Eq. 26), :class:`jaxion.local.LocalDynamics`.

Or pass a ready description (any :class:`~jaxion.dynamics.AbstractDynamics`) in place of the system:
``simulate(dynamics, position, velocity, t1)``, ``single_pass(dynamics, speed)``. Every description
takes ``size=None`` (the default) as the infinite lattice and ``size=L`` as the periodic ``L^dim`` one.

:func:`simulate` builds the description (``DESCRIPTIONS[method].build(system, t1, **options)``),
checks the start and integrates with :func:`jaxion.dynamics.run_from`; ``stop_z`` ends the run when
the ion's z coordinate reaches it (:class:`~jaxion.dynamics.CrossedPlane`). The descriptions never
import this module; the run checks they share live in :mod:`jaxion.run_checks` and are re-exported here.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from .dynamics import AbstractDynamics, CrossedPlane, run_from, straight_duration
from .finite_box import check_sound_return
from .full import FullDynamics
from .kernel import KernelDynamics
from .local import LocalDynamics
from .run_checks import (  # noqa: F401  (re-exported: jaxion.simulation.<name> stays importable)
    RESOLVED_ULPS,
    STEPS_PER_RANGE,
    FiniteBoxWarning,
    curvature_met,
    pass_barrier,
    pass_geometry,
    require_step,
    run_duration,
)
from .system import System
from .trajectory import Trajectory

# Default warning threshold of the energy drift, relative to the energy scale of the run (see
# Trajectory.energy_drift); pass drift_tol to simulate / single_pass to change it, None to silence it.
DRIFT_TOL = 1e-4
# What simulate and single_pass accept as run options; every other option goes to the description.
_RUN_OPTIONS = ("stop_z", "n_save", "progress", "key")


# The one table of description names (what ``method=`` means): name -> AbstractDynamics subclass.
DESCRIPTIONS = {"full": FullDynamics, "kernel": KernelDynamics, "local": LocalDynamics}
METHODS = tuple(DESCRIPTIONS)


class EnergyDriftWarning(UserWarning):
    """A run's energy drifted more than its tolerance (``drift_tol``): the step is too large for it."""


class PrecisionWarning(UserWarning):
    """A result is below what the floating-point precision of the run resolves (e.g. float32)."""


class IncompletePassError(RuntimeError):
    """A single pass did not complete (the ion was reflected or trapped), with ``incomplete="raise"``."""


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
        _checks.warn(
            f"the energy drifted by {float(np.max(drift)):.3g} ({float(np.max(relative)):.2g} of |E(0)|, tolerance "
            f"drift_tol={drift_tol:g}): the time step is too large for the forces met; use a smaller dt (the result "
            "is not reliable where the drift is not far below the quantity of interest)",
            EnergyDriftWarning)


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


def _require_system(system):
    """``ValueError`` unless ``system`` is a :class:`~jaxion.system.System`."""
    if not isinstance(system, System):
        raise ValueError(f"system must be a jaxion System, got {type(system).__name__}")


def describe(system, t1, method="full", start=None, **options):
    """The description of a run of up to ``t1`` periods: ``DESCRIPTIONS[method].build(system, t1,
    **options)`` (a :class:`~jaxion.dynamics.AbstractDynamics`), after its ``precheck`` of
    ``start = (position, velocity, duration)`` when given; ``system`` may already be a description,
    which is returned as it is (then no options are accepted)."""
    if isinstance(system, AbstractDynamics):
        if options:
            raise ValueError(
                f"options {sorted(options)} are a description's: pass them when building it, not with a ready "
                f"{type(system).__name__}"
            )
        return system
    _require_system(system)
    if method not in DESCRIPTIONS:
        raise ValueError(f"method must be one of {METHODS} or a ready description, got {method!r}")
    description = DESCRIPTIONS[method]
    if start is not None:
        description.precheck(system, *start, **options)
    return description.build(system, t1, **options)


def _split_options(options):
    """``(run options, description options)`` of ``simulate`` / ``single_pass``'s ``**options``."""
    run = {name: options.pop(name) for name in _RUN_OPTIONS if name in options}
    return run, options


def simulate(system, position, velocity, t1, method="full", drift_tol=DRIFT_TOL, **options):
    """Integrate the ion's motion from ``position``, ``velocity`` (each ``(3,)``) for ``t1`` periods.

    Args:
        system: the :class:`~jaxion.System`, or a ready description (an
            :class:`~jaxion.dynamics.AbstractDynamics`; ``method`` and the description's options
            are then not used).
        position, velocity: ``(3,)`` initial ion state.
        t1: duration (periods).
        method: a name of :data:`DESCRIPTIONS`: "full" (default), "kernel" or "local".
        drift_tol: warn (:class:`EnergyDriftWarning`) when ``trajectory.energy_drift`` exceeds
            this fraction of ``|E(0)|``; ``None`` to silence.
        **options: the run's ``stop_z`` (end when ``sigma_z >= stop_z``), ``n_save`` (default
            200), ``progress``, ``key``; the others go to the description (``size``, ``dt``,
            ``solver``, ...: see ``jaxion.full.simulate`` etc.).

    Returns a :class:`Trajectory`.

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
    run_options, options = _split_options(dict(options))
    ready = isinstance(system, AbstractDynamics)
    physical = system.system if ready else system
    _require_system(physical)
    problems = [_checks.finite("position", position), _checks.finite("velocity", velocity)]
    physical, position, velocity = _checks.enforce((physical, position, velocity),
                                                   _checks.problems_of(physical) + problems)
    stop_z = run_options.get("stop_z")
    stop = None if stop_z is None else CrossedPlane(stop_z)
    start = (position, velocity, straight_duration(position, velocity, t1, stop))
    dynamics = describe(system if ready else physical, t1, method, start, **options)
    trajectory = run_from(dynamics, position, velocity, t1, saveat=run_options.get("n_save", 200), stop=stop,
                          key=run_options.get("key"), progress=run_options.get("progress", False))
    require_finite_trajectory(trajectory)
    check_energy_drift(trajectory, drift_tol)
    return trajectory


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
        _checks.warn(
            f"{int(np.sum(unresolved))} single-pass loss(es) are below what {jnp.dtype(dtype).name} resolves "
            f"({RESOLVED_ULPS:g} x eps x initial kinetic energy = {float(np.max(floor)):.3g}): their size and sign "
            "are rounding; run in float64 or use loss_perturbative",
            PrecisionWarning)


def _keys(key, speed):
    """Per-speed PRNG keys of a single pass (``None`` without noise)."""
    if key is None:
        return None
    return key if speed.ndim == 0 else jax.random.split(key, speed.shape[0])


def single_pass(system, speed, start=(0.0, 0.0), method="full", margin=7.0, slowdown=4.0, incomplete="nan",
                drift_tol=DRIFT_TOL, **options):
    """The paper's single-pass loss: ion starts ``margin`` ranges before the interacting sites with
    speed ``v0`` along z, stops ``margin`` ranges past them; ``Delta = mu_z (v0^2 - v_end^2) / 8 pi^2``.

    Args:
        system: the :class:`~jaxion.System`; its z axis must be mobile. Or a ready description (an
            :class:`~jaxion.dynamics.AbstractDynamics`; ``method`` and the description's options are
            then not used; it must hold runs of the pass's length).
        speed: scalar or ``(K,)`` speeds (concrete); a batch runs as one vectorised computation.
        start: transverse position ``(x, y)`` of the straight path.
        method: a name of :data:`DESCRIPTIONS`: "full" (default), "kernel" or "local".
        margin: start/stop distance in units of the potential's range.
        slowdown: the run is given ``slowdown`` times the straight-line crossing time before the
            ion is declared trapped.
        incomplete: what a pass that did not complete (reflected or trapped ion) gives: ``"nan"``
            (default: ``loss`` is ``nan`` there and ``completed`` is ``False``) or ``"raise"``
            (:class:`IncompletePassError`).
        drift_tol: warn (:class:`EnergyDriftWarning`) when a run's energy drift exceeds this
            fraction of its initial energy; ``None`` to silence.
        **options: the runs' ``n_save`` (default 200), ``progress``, ``key``; the others go to the
            description (``size``, ``dt``, ...).

    Warns :class:`PrecisionWarning` where a loss is below what the run's precision resolves
    (float32 runs: ``dtype=jnp.float32`` or ``jax_enable_x64`` off).
    """
    if incomplete not in ("nan", "raise"):
        raise ValueError(f"incomplete must be 'nan' or 'raise', got {incomplete!r}")
    speed = jnp.asarray(speed, dtype=float)
    _checks.require_positive("speed", speed)
    ready = isinstance(system, AbstractDynamics)
    physical = system.system if ready else system
    _require_system(physical)
    if _checks.is_concrete(physical.mass) and np.isinf(np.asarray(physical.mass)[2]):
        raise ValueError("single_pass moves the ion along z, but the ion's z mass is infinite (pinned)")
    run_options, options = _split_options(dict(options))
    if "stop_z" in run_options:
        raise ValueError("single_pass sets the end plane itself (margin ranges past the sites): no stop_z")
    position, stop_z = pass_geometry(physical, start, margin)
    problems = _checks.problems_of(physical) + [_checks.finite("start", position), physical.path_problem(position[:2])]
    physical, position = _checks.enforce((physical, position), problems)
    slowest = float(np.min(np.asarray(speed))) if _checks.is_concrete(speed) else None
    if slowest is None:
        raise ValueError("single_pass needs concrete speeds to size the run; vmap over it with jax.vmap on simulate")
    # the duration only sizes the run: no derivative flows through it (width, spacing may be traced)
    t1 = slowdown * float(jax.lax.stop_gradient(stop_z - position[2])) / slowest
    stop = CrossedPlane(stop_z)
    fastest = jnp.array([0.0, 0.0, float(np.max(np.asarray(speed)))])
    checked_start = (position, fastest, stop.duration(position, fastest, t1))
    dynamics = describe(system if ready else physical, t1, method, checked_start, **options)
    # The run length t1 is only an upper bound (slowdown x the crossing time of the slowest ion): the
    # box warning before the runs is left out, and check_sound_return estimates, once, where returning
    # sound changes a loss beyond its tolerance (for the speeds whose actual run lasts long enough).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FiniteBoxWarning)
        dynamics.check(*checked_start)
    n_save = run_options.get("n_save", 200)
    progress = run_options.get("progress", False)

    def one(v0, key):  # checked above for the whole batch
        velocity = jnp.array([0.0, 0.0, 1.0]) * v0
        return run_from(dynamics, position, velocity, t1, saveat=n_save, stop=stop, key=key, progress=progress,
                        check=False)

    keys = _keys(run_options.get("key"), speed)
    trajectory = one(speed, keys) if speed.ndim == 0 else jax.vmap(one)(speed, keys)
    require_finite_trajectory(trajectory)
    if _checks.is_concrete(trajectory.t_final):
        if dynamics.periodic_size is not None:
            check_sound_return(physical, speed, position[:2], dynamics.periodic_size, durations=trajectory.t_final,
                               box_tol=dynamics.sound_return_tol)
    check_energy_drift(trajectory, drift_tol)
    completed = pass_completed(trajectory, stop_z)
    if incomplete == "raise" and _checks.is_concrete(completed) and not np.all(np.asarray(completed)):
        raise IncompletePassError(
            f"the pass did not complete at speed(s) {np.asarray(speed)[~np.asarray(completed)].tolist()}: the ion was "
            "reflected or trapped within the run (slowdown x the crossing time); no single-pass loss exists"
        )
    initial_kinetic = physical.ion_kinetic_energy(jnp.stack([jnp.zeros_like(speed)] * 2 + [speed], axis=-1))
    loss = jnp.where(completed, initial_kinetic - physical.ion_kinetic_energy(trajectory.velocity_final), jnp.nan)
    check_precision(loss, initial_kinetic, trajectory.velocity_final.dtype)
    return SinglePass(speed=speed, loss=loss, completed=completed, trajectory=trajectory)
