"""What the thermal descriptions share: the result each returns (:class:`ThermalTrajectory`), the
checks on a finished run, and their base classes as descriptions of :mod:`jaxion.dynamics`.

The white-noise Langevin (:class:`~jaxion.thermal.langevin.LangevinDynamics`), coloured-noise
(:class:`~jaxion.thermal.coloured.ColouredNoiseDynamics`) and full-lattice
(:class:`~jaxion.thermal.full.FullThermalDynamics`) descriptions are final subclasses of
:class:`jaxion.dynamics.AbstractDynamics`, so the one pure runner integrates each of them::

    dynamics = LangevinDynamics(model, temperature=300.0, dt=0.002)
    state = dynamics.initial_state(position, None, key_start)      # Maxwell velocity drawn
    trajectory = run(dynamics, state, 5.0, saveat=51, stop=LeftRegion(centre, radius), key=key_noise)

and returns a :class:`jaxion.trajectory.Trajectory` in the descriptions' own physical units (times
in ps, positions in Å, velocities in Å/ps, energies in meV), not in the zero-temperature methods'
periods. Their runners (:func:`~jaxion.thermal.langevin.run_langevin`,
:func:`~jaxion.thermal.coloured.run_coloured`, :func:`~jaxion.thermal.full.run_full_thermal`) stay,
with their diagnostics, built from the same pieces.

The discretisation belongs to the description: ``dt`` (ps), a keyword of each constructor, kept a
Python float (concrete for the step arithmetic, traced by the compiled solve: runs that differ
only in ``dt`` share it). Its default ``None`` keeps the constructors of the runners' callers as
they were; :func:`jaxion.dynamics.run` refuses such a description with a ``ValueError`` that says to
pass ``dt``. Every run is on the fixed step grid ``t_k = k dt``: ``t1`` is rounded up to whole steps
and the save times onto the grid (:meth:`AbstractThermalDynamics.time_grid`); the coloured
description's error control may shorten its steps in between. A stop ends the run at the end of the
first step where it holds; saves after it have ``ts = inf``.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..dynamics import AbstractDiffraxDynamics, AbstractDynamics


class ThermalTrajectory(eqx.Module):
    """An ion trajectory (physical units) saved every ``save_every`` steps; batched runs add a leading axis.

    Attributes:
        ts: ``(T,)`` save times, ps.
        positions: ``(T, 3)`` unwrapped ion positions, Å (the ion may cross many cells).
        velocities: ``(T, 3)`` ion velocities, Å/ps.
        energy: ``(T,)`` the description's energy, meV (conserved by the full description;
            for the time-local ones the ion's kinetic plus landscape energy).
        finite: scalar bool, ``False`` if the state stopped being finite (the arrays then hold
            NaN from that point on; :func:`require_finite` raises on it).
    """

    ts: jax.Array
    positions: jax.Array
    velocities: jax.Array
    energy: jax.Array
    finite: jax.Array


class NonFiniteThermalRunError(FloatingPointError):
    """A thermal run produced NaN or infinite values (a step too large for the forces met)."""


def poison_after_failure(positions, velocities, energy):
    """Whether every saved value is finite, and the arrays with NaN from the first bad save on.

    Shapes ``(T, 3), (T, 3), (T,)``; a run that failed physically must never be averaged in.
    """
    good = jnp.isfinite(energy) & jnp.all(jnp.isfinite(positions), -1) & jnp.all(jnp.isfinite(velocities), -1)
    alive = jnp.cumprod(good.astype(jnp.int32)).astype(bool)
    nan = jnp.nan
    return (jnp.all(alive), jnp.where(alive[:, None], positions, nan), jnp.where(alive[:, None], velocities, nan),
            jnp.where(alive, energy, nan))


def require_finite(trajectory):
    """Raise :class:`NonFiniteThermalRunError` if a concrete (possibly batched) trajectory failed."""
    if _checks.is_concrete(trajectory.finite):
        failed = np.flatnonzero(~np.asarray(trajectory.finite).reshape(-1))
        if failed.size:
            raise NonFiniteThermalRunError(
                f"{failed.size} trajectory(ies) became non-finite (first: index {failed[0]}): the time step is "
                "too large for the forces met; reduce dt"
            )
    return trajectory


# ----------------------------------------------------------------------------- the interface


def step_option(dt):
    """A constructor's ``dt``: ``None``, or a concrete positive number kept as a Python float."""
    if dt is None:
        return None
    if not _checks.is_concrete(dt):
        raise ValueError("dt must be a concrete number (it fixes the number of steps); vmap over the state")
    _checks.require_positive("dt", dt)
    return float(dt)


def ion_state(state, description):
    """``(R (3,), V (3,))`` of a time-local description's state as float arrays; ``ValueError``
    naming the part with a wrong shape (checked on traced values too)."""
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise ValueError(f"the {description} state is (R (3,), V (3,)) (Å, Å/ps), got {type(state).__name__} "
                         f"{jax.tree.map(np.shape, state)}")
    try:
        position, velocity = (jnp.asarray(x, dtype=float) for x in state)
    except (TypeError, ValueError):
        raise ValueError(f"the {description} state is (R (3,), V (3,)) (Å, Å/ps), got parts of shapes "
                         f"{jax.tree.map(np.shape, tuple(state))}") from None
    _checks.require_shape("state position", position, (3,))
    _checks.require_shape("state velocity", velocity, (3,))
    return position, velocity


class AbstractThermalDynamics(AbstractDynamics):
    """A thermal description: physical units, the model as its system, fixed steps ``dt`` (ps)."""

    model: eqx.AbstractVar[object]
    dt: eqx.AbstractVar[float | None]

    @property
    def system(self):
        """The model (physical units), what the zero-temperature descriptions call their system."""
        return self.model

    def step(self):
        """``dt`` (ps); a ``ValueError`` that says what to pass when the description was built without one."""
        if self.dt is None:
            name = type(self).__name__
            raise ValueError(
                f"{name} was built without a time step: pass dt (ps) to its constructor, e.g. {name}(..., dt=0.002), "
                "to run it through jaxion.dynamics.run (its own runner takes dt as an argument)"
            )
        return self.dt

    def n_steps(self, t1):
        """Steps of ``dt`` in ``t1`` ps, rounded up (a step a hair above ``dt`` by rounding counts as ``dt``)."""
        dt = self.step()
        _checks.require_run_length(t1, dt)
        return max(1, math.ceil(float(t1) / dt * (1.0 - 1e-12)))

    def time_grid(self, t1, n_save):
        """``t1`` rounded up to whole steps, and ``n_save`` save times rounded onto the grid ``k dt`` (ps)."""
        n_steps = self.n_steps(t1)
        return n_steps * self.dt, np.round(np.linspace(0.0, n_steps, n_save)) * self.dt


class AbstractTimeLocalDynamics(AbstractThermalDynamics, AbstractDiffraxDynamics):
    """A thermal description of the ion alone: the state ``(R (3,), V (3,))`` (Å, Å/ps) integrated by
    one diffrax solve; the energy of the saves is computed after the run, at the save times."""

    @abc.abstractmethod
    def energy(self, state, t=0.0):
        """The description's energy (meV) of the state ``(R, V)`` at time ``t`` (ps)."""

    def ion(self, state):
        return state[0], state[1]

    def observe(self, t, state, args=None):
        """The ion's position and velocity; :meth:`complete` adds the energy."""
        return dict(position=state[0], velocity=state[1])

    def complete(self, ts, saved):
        """The energies of the saved states at their times, vectorised (``inf`` where not reached)."""
        reached = jnp.isfinite(ts)
        safe = [jnp.where(reached[:, None], saved[name], 0.0) for name in ("position", "velocity")]
        energy = jax.vmap(lambda t, position, velocity: self.energy((position, velocity), t))(
            jnp.where(reached, ts, 0.0), *safe)
        return dict(saved, energy=jnp.where(reached, energy, jnp.inf))

    def checked_start(self, state):
        """``(dynamics, (R, V))`` to integrate from ``state``: shapes checked (:func:`ion_state`)."""
        return self, ion_state(state, type(self).__name__)

    def noise_key(self, key):
        """The key the run's noise is drawn from (none needed without noise)."""
        return key

    def integrate(self, state, t1, save_times, stop=None, key=None, progress=False):
        dynamics, state = self.checked_start(state)
        return AbstractDiffraxDynamics.integrate(dynamics, state, t1, save_times, stop, self.noise_key(key), progress)
