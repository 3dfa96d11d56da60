"""One interface for every description of the ion's motion, and one pure ``run``.

NOTE for the descriptions' authors (kernel.py and the thermal descriptions), where things live:
  * ``Trajectory``: ``from .trajectory import Trajectory``;
  * ``STEPS_PER_RANGE``, ``RESOLVED_ULPS``, ``FiniteBoxWarning``, ``require_step``, ``curvature_met``,
    ``run_duration``, ``pass_geometry``, ``pass_barrier``: ``from .run_checks import ...``. A
    description never imports ``jaxion.simulation`` (the protocols, which import the descriptions
    at their top for the name table ``DESCRIPTIONS``); ``jaxion.simulation.<name>`` stays importable;
  * this module: ``AbstractDynamics``, ``AbstractDiffraxDynamics``, the stops, ``run``, ``run_from``,
    ``straight_duration``.
  Beyond the first draft (backward compatible): the classmethods ``build(system, t1, **options)``
  (default ``cls(system, **options)``; what ``method=name`` builds) and ``precheck(system, position,
  velocity, duration, **options)`` (the protocols run it before ``build``, so a step too large fails
  before anything is tabulated); ``periodic_size`` / ``sound_return_tol`` (a finite periodic box, whose
  returning sound the single pass estimates);
  ``AbstractStop.duration`` (the straight-path duration to the stop, what the checks size themselves
  with); ``AbstractDiffraxDynamics.time_dtype``.

A description (``AbstractDynamics``) is an equinox module holding the physics (the
:class:`~jaxion.System`, the framework's response it needs) and its discretisation (step, solver).
Every description provides the same operations:

* ``build(system, t1, **options)`` (classmethod): the description for runs of up to ``t1`` periods
  from the method's options (``size``, ``dt``, ``solver``, ...); what ``method="..."`` calls;
* ``initial_state(position, velocity, key)``: the state with the ion at ``position (3,)`` moving
  at ``velocity (3,)`` and the framework at rest (or drawn from ``key`` where it is thermal);
* ``ion(state) -> (position (3,), velocity (3,))`` and ``energy(state)``;
* ``observe(t, state, args)``: what a :class:`~jaxion.trajectory.Trajectory` keeps of a state
  (``complete(ts, saved)`` may add what is cheaper computed after the run);
* ``time_grid(t1, n_save)``: the run's end and save times (fixed steps round them onto their grid);
* ``check(position, velocity, duration)``: concrete-input checks before a run (step, box);
* ``integrate(state, t1, save_times, stop, key, progress)``: the time integration itself.

Descriptions whose equations of motion are diffrax terms subclass :class:`AbstractDiffraxDynamics`,
which implements ``integrate`` once, as one compiled ``diffrax.diffeqsolve``, from ``terms(key)``
(drift/kick, plus a control term where there is noise), ``solver()`` and ``step_control(t1)``. A
description with memory (the kernel method) implements ``integrate`` itself. Every concrete
description is final (equinox's abstract-or-final rule); a new one is one subclass in one file, and
runs through :func:`run`, ``jaxion.simulate(dynamics, ...)`` and ``jaxion.single_pass(dynamics, ...)``
without touching any other module.

Stop conditions are objects shared by all descriptions (:class:`AbstractStop`): a condition
``stop(t, position, velocity) -> bool`` on the ion's state, checked at the end of each step; the
run ends at the end of the first step where it holds (a stop that holds at the start ends the run
at once).

Compilation: the run's arrays (state, times, the stop's values, the description's array fields and
its own Python-float fields such as a step ``dt``) are traced, so runs that differ only in them share
one compiled solve; static fields (solver names, sizes, tolerances) and the step bound ``max_steps`` (a
power of two for fixed steps) select the compilation. Keep a number the description needs concretely
(``dt`` in ``time_grid``, ``step_control``) a Python float: it stays concrete where the description
passes through ``jit`` or ``shard_map`` with ``eqx.partition(..., eqx.is_array)``.
"""

import abc
import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .run_checks import BOX_TOL
from .system import System
from .trajectory import Trajectory


def _as_float_array(value):
    """A float array of the default precision (float64 under ``jax_enable_x64``): traced, never static."""
    return jnp.asarray(value, dtype=float)


def _concrete_floats(*values):
    """``True`` when every value is concrete (no tracer), so the checks can read them as numbers."""
    return _checks.is_concrete(*values)


# ----------------------------------------------------------------------------- stop conditions


class AbstractStop(eqx.Module):
    """A condition on the ion that ends a run: ``stop(t, position (3,), velocity (3,)) -> bool``."""

    @abc.abstractmethod
    def __call__(self, t, position, velocity):
        """``True`` once the run should end (scalar boolean; traced)."""

    def duration(self, position, velocity, t1):
        """The straight-path duration of a run of ``t1`` from ``position``, ``velocity``: when this
        stop ends it at the latest along the straight line (the checks size themselves with it;
        ``t1`` by default, and whenever an input is traced)."""
        return float(t1) if _concrete_floats(t1) else t1


class CrossedPlane(AbstractStop):
    """The ion has reached the plane ``position[axis] = value`` (``>=``; the single-pass end)."""

    value: jax.Array = eqx.field(converter=_as_float_array)
    axis: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis!r}")

    def __call__(self, t, position, velocity):
        return position[self.axis] >= self.value

    def duration(self, position, velocity, t1):
        """``t1``, or the time to reach the plane at the starting velocity if shorter."""
        duration = super().duration(position, velocity, t1)
        if _concrete_floats(position, velocity, self.value, t1) and float(velocity[self.axis]) > 0:
            duration = min(duration, (float(self.value) - float(position[self.axis])) / float(velocity[self.axis]))
        return duration


class TimeReached(AbstractStop):
    """The time has reached ``time`` (periods)."""

    time: jax.Array = eqx.field(converter=_as_float_array)

    def __call__(self, t, position, velocity):
        return t >= self.time

    def duration(self, position, velocity, t1):
        duration = super().duration(position, velocity, t1)
        return min(duration, float(self.time)) if _concrete_floats(self.time, t1) else duration


class LeftRegion(AbstractStop):
    """The ion is farther than ``radius`` from ``centre (3,)``: it escaped the region of interest."""

    centre: jax.Array = eqx.field(converter=_as_float_array)
    radius: jax.Array = eqx.field(converter=_as_float_array)

    def __check_init__(self):
        if jnp.shape(self.centre) != (3,) or jnp.shape(self.radius) != ():
            raise ValueError(f"centre must be (3,) and radius a scalar, got {jnp.shape(self.centre)}, "
                             f"{jnp.shape(self.radius)}")

    def __call__(self, t, position, velocity):
        return jnp.sum((position - self.centre) ** 2) > self.radius**2


class Trapped(AbstractStop):
    """The ion's speed has fallen to ``speed`` or below: it is trapped (or turning back)."""

    speed: jax.Array = eqx.field(converter=_as_float_array)

    def __call__(self, t, position, velocity):
        return jnp.sum(velocity**2) <= self.speed**2


class AnyStop(AbstractStop):
    """Ends the run when any of ``stops`` holds."""

    stops: tuple

    def __init__(self, *stops):
        if len(stops) == 1 and isinstance(stops[0], (tuple, list)):
            stops = tuple(stops[0])
        if not stops or not all(isinstance(stop, AbstractStop) for stop in stops):
            raise ValueError(f"AnyStop takes one or more stop objects, got {stops!r}")
        self.stops = tuple(stops)

    def __call__(self, t, position, velocity):
        return jnp.any(jnp.stack([jnp.asarray(stop(t, position, velocity)) for stop in self.stops]))

    def duration(self, position, velocity, t1):
        durations = [stop.duration(position, velocity, t1) for stop in self.stops]
        return min(durations) if _concrete_floats(durations) else super().duration(position, velocity, t1)


# ----------------------------------------------------------------------------- descriptions


class AbstractDynamics(eqx.Module):
    """A description of the ion's motion (module docstring); subclasses hold ``system``."""

    system: eqx.AbstractVar[System]

    @classmethod
    def build(cls, system, t1, **options):
        """The description of ``system`` for runs of up to ``t1`` periods with the method's
        ``options`` (what ``simulate(system, ..., method=name, **options)`` builds). Default:
        ``cls(system, **options)``; a description whose discretisation depends on the run's
        length (a fixed box, a tabulated kernel) overrides it."""
        return cls(system, **options)

    @classmethod
    def precheck(cls, system, position, velocity, duration, **options):
        """Cheap concrete checks of a start of straight-path ``duration`` from the options alone, run
        by the protocols before :meth:`build` (which may tabulate, e.g. a memory kernel or a Green's
        function): ``ValueError`` for a step too large for the forces met. Default: none;
        :meth:`check` repeats them on the built description (a ready description skips this)."""

    @abc.abstractmethod
    def initial_state(self, position, velocity, key=None):
        """The state with the ion at ``position (3,)`` moving at ``velocity (3,)``."""

    @abc.abstractmethod
    def ion(self, state):
        """``(position (3,), velocity (3,))`` of the ion in ``state``."""

    @abc.abstractmethod
    def energy(self, state):
        """The description's total energy of ``state`` (scalar, float64)."""

    @property
    def conservative(self):
        """``True`` when ``energy`` is conserved (``Trajectory.energy_drift`` is then ``|E - E0|``)."""
        return True

    def observe(self, t, state, args=None):
        """What a :class:`~jaxion.trajectory.Trajectory` keeps of ``state``: a dict with
        ``position``, ``velocity``, ``energy`` (and ``sites (S, 3)`` where saved)."""
        position, velocity = self.ion(state)
        return dict(position=position, velocity=velocity, energy=self.energy(state))

    def complete(self, ts, saved):
        """``observe``'s saves completed after the run, vectorised over the save times: ``saved`` is a
        dict of ``(T, ...)`` arrays at ``ts (T,)`` (``inf`` where not reached). Default: unchanged. A
        description whose per-save quantity is cheaper vectorised (the time-local energy) computes it
        here rather than inside the solver's loop."""
        return saved

    def time_grid(self, t1, n_save):
        """``(t1, save_times (n_save,))`` of a run: evenly spaced in ``[0, t1]`` by default;
        fixed-step descriptions round both onto their step grid."""
        return t1, jnp.linspace(0.0, t1, n_save)

    def check(self, position, velocity, duration):
        """Concrete-input checks before a run of straight-path ``duration`` (step too large for the
        forces met, box too small): raise ``ValueError`` with what was wrong. Default: none."""

    @property
    def periodic_size(self):
        """``L`` when the framework is a finite periodic ``L^dim`` box (the sound the ion radiates goes
        round it and returns to the sites), ``None`` for the infinite lattice (default). After a
        single pass, ``jaxion.single_pass`` estimates how much that returning sound changed each loss
        (:func:`jaxion.finite_box.check_sound_return`) and warns beyond :attr:`sound_return_tol`."""
        return None

    @property
    def sound_return_tol(self):
        """Relative change of a single-pass loss by the returning sound above which ``single_pass``
        warns (``None``: never); ``jaxion.run_checks.BOX_TOL`` by default."""
        return BOX_TOL

    @abc.abstractmethod
    def integrate(self, state, t1, save_times, stop=None, key=None, progress=False):
        """Integrate from ``state`` at ``t = 0`` to ``t1`` (or the stop); returns a
        :class:`~jaxion.trajectory.Trajectory` saved at ``save_times`` (``ts = inf`` past a stop)."""


class AbstractDiffraxDynamics(AbstractDynamics):
    """A description whose equations of motion are diffrax terms; ``integrate`` is one
    ``diffrax.diffeqsolve``, compiled once per structure (module docstring)."""

    @abc.abstractmethod
    def terms(self, key=None):
        """The diffrax terms (e.g. ``(drift, kick)`` or ``MultiTerm(ODETerm, ControlTerm)``)."""

    @abc.abstractmethod
    def solver(self):
        """The diffrax solver."""

    @abc.abstractmethod
    def step_control(self, t1):
        """``(dt0, stepsize_controller, max_steps)`` for a run of length ``t1`` (``dt0`` a number
        or ``None``, ``max_steps`` a concrete int)."""

    @property
    def time_dtype(self):
        """dtype of the solver's times (diffrax promotes the state to it): float64 by default."""
        return jnp.result_type(float)

    def integrate(self, state, t1, save_times, stop=None, key=None, progress=False):
        dt0, controller, max_steps = self.step_control(t1)
        dtype = self.time_dtype
        # NumPy for concrete numbers: traced by the compiled solve like arrays, without a device op each
        cast = lambda x: None if x is None else np.asarray(x, dtype) if _concrete_floats(x) else jnp.asarray(x, dtype)
        return _solve(traced_floats(self), state, cast(0.0), cast(t1), cast(dt0), jnp.asarray(save_times, dtype),
                      stop, key, controller, int(max_steps), bool(progress))


def traced_floats(dynamics):
    """``dynamics`` with its own Python-float fields (a step ``dt``) as arrays, traced by the compiled
    solve so that runs differing in them share it; the description keeps them as numbers, concrete
    for its arithmetic (``time_grid``, ``step_control``) even where the description itself passes
    through ``jit`` or ``shard_map`` (``eqx.partition`` keeps numbers static). Nested modules are left
    alone. A copy of the fields, like ``eqx.tree_at`` but without flattening the whole module."""
    fields = dataclasses.fields(dynamics)
    names = [f.name for f in fields if not f.metadata.get("static", False) and type(getattr(dynamics, f.name)) is float]
    if not names:
        return dynamics
    copy = object.__new__(type(dynamics))
    for field in fields:
        value = getattr(dynamics, field.name)
        object.__setattr__(copy, field.name, np.asarray(value) if field.name in names else value)
    return copy


class _Observe(eqx.Module):
    """Save function of a diffrax run: ``dynamics.observe`` (a module: repeated runs reuse the compiled solve)."""

    dynamics: AbstractDynamics

    def __call__(self, t, y, args):
        return self.dynamics.observe(t, y, args)


class _StopCondition(eqx.Module):
    """diffrax event condition from a stop object: evaluated on the ion's state after each step."""

    dynamics: AbstractDynamics
    stop: AbstractStop

    def __call__(self, t, y, args, **kwargs):
        return jnp.asarray(self.stop(t, *self.dynamics.ion(y)), dtype=bool)


@eqx.filter_jit
def _solve(dynamics, state, t0, t1, dt0, save_times, stop, key, controller, max_steps, progress):
    """The diffrax solve of :meth:`AbstractDiffraxDynamics.integrate` and the trajectory, one compiled function."""
    observe = _Observe(dynamics)
    save = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=save_times, fn=observe), diffrax.SubSaveAt(t1=True, fn=observe)])
    solution = diffrax.diffeqsolve(
        dynamics.terms(key),
        dynamics.solver(),
        t0,
        t1,
        dt0,
        state,
        saveat=save,
        stepsize_controller=controller,
        # No root finding (it triples the compile time): the run ends at the end of the first step
        # where the stop holds.
        event=None if stop is None else diffrax.Event(_StopCondition(dynamics, stop)),
        max_steps=max_steps,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    saved, final = (dynamics.complete(ts, ys) for ts, ys in zip(solution.ts, solution.ys))
    return Trajectory(
        ts=solution.ts[0],
        position=saved["position"],
        velocity=saved["velocity"],
        energy=saved["energy"],
        t_final=solution.ts[1][-1],
        position_final=final["position"][-1],
        velocity_final=final["velocity"][-1],
        energy_final=final["energy"][-1],
        site_displacement=saved.get("sites"),
        conservative=dynamics.conservative,
    )


# ----------------------------------------------------------------------------- the run


def _require_interface(dynamics, stop):
    """``ValueError`` unless ``dynamics`` is a description and ``stop`` a stop object (or ``None``)."""
    if not isinstance(dynamics, AbstractDynamics):
        raise ValueError(f"dynamics must be a jaxion AbstractDynamics, got {type(dynamics).__name__}")
    if stop is not None and not isinstance(stop, AbstractStop):
        raise ValueError(
            f"stop must be a jaxion AbstractStop (CrossedPlane, TimeReached, ...), got {type(stop).__name__}"
        )


def run(dynamics, state, t1, *, saveat=200, stop=None, key=None, progress=False):
    """Integrate any description from ``state`` for ``t1`` periods (pure: jit/vmap/grad-able in
    ``state`` and the description's arrays).

    Args:
        dynamics: an :class:`AbstractDynamics`.
        state: from ``dynamics.initial_state(position, velocity, key)``.
        t1: duration (periods; concrete for fixed-step descriptions, which round it onto their grid).
        saveat: number of evenly spaced save times in ``[0, t1]`` (on the step grid for fixed steps),
            or the ``(T,)`` save times themselves.
        stop: an :class:`AbstractStop` (or ``None``): end at the end of the first step where it holds.
        key: PRNG key of the run's noise (descriptions with noise); ``None`` otherwise.
        progress: show a progress meter.

    Returns:
        :class:`~jaxion.trajectory.Trajectory`.
    """
    _require_interface(dynamics, stop)
    if _concrete_floats(t1):
        _checks.require_positive("t1", t1)
    if isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool):
        _checks.require_integer("saveat", saveat, low=1)
        t1, save_times = dynamics.time_grid(t1, int(saveat))
    else:
        save_times = jnp.asarray(saveat)
        if save_times.ndim != 1:
            raise ValueError(
                f"saveat must be a number of save times or a (T,) array of times, got shape {save_times.shape}"
            )
        t1 = dynamics.time_grid(t1, 2)[0]  # the end, on the step grid for fixed steps
    return dynamics.integrate(state, t1, save_times, stop, key, progress)


def straight_duration(position, velocity, t1, stop=None):
    """How long a run of ``t1`` lasts at most along the straight path from ``position`` at ``velocity``
    (:meth:`AbstractStop.duration`; ``t1`` without a stop): what the checks size themselves with."""
    if stop is None:
        return float(t1) if _concrete_floats(t1) else t1
    return stop.duration(position, velocity, t1)


def run_from(dynamics, position, velocity, t1, *, saveat=200, stop=None, key=None, progress=False, check=True):
    """The ion started at ``position``, ``velocity`` (each ``(3,)``), the framework at rest (or
    drawn): ``dynamics.check`` over the straight-path duration to the stop (concrete inputs; left out
    with ``check=False``, e.g. when the caller checked a batch once), then :func:`run` from
    ``dynamics.initial_state``. ``key`` (or ``None``) is split between the initial state and the run.
    What every ``simulate`` does after building its description."""
    _require_interface(dynamics, stop)
    for name, value in (("position", position), ("velocity", velocity)):
        _checks.require_shape(name, value, (3,))
    if check:
        dynamics.check(position, velocity, straight_duration(position, velocity, t1, stop))
    state_key, run_key = (None, None) if key is None else jax.random.split(key)
    state = dynamics.initial_state(position, velocity, state_key)
    return run(dynamics, state, t1, saveat=saveat, stop=stop, key=run_key, progress=progress)


__all__ = [
    "AbstractDiffraxDynamics",
    "AbstractDynamics",
    "AbstractStop",
    "AnyStop",
    "CrossedPlane",
    "LeftRegion",
    "TimeReached",
    "Trapped",
    "run",
    "run_from",
    "straight_duration",
]
