"""The full thermal description (physics.md 5.4): the whole periodic lattice plus the ion, physical units.

Units as in :mod:`jaxion.thermal.model`: Å, ps, meV, masses in meV ps^2/Å^2, kelvin. The
framework is a periodic ``L^3`` box of masses ``m`` (``lattice.mass``) with displacements
``u_n`` and velocities ``v_n`` (``(L, L, L, 3)``, cell ``n`` at index ``n``, the layout of
:meth:`~jaxion.thermal.modes.ThermalModes.displacements`); the ion (mass ``M``) has an
*unwrapped* position ``R`` (it may cross the box many times) and velocity ``V``.

    m u_n''  = -kappa u_n - sum_b Phi_b (2 u_n - u_{n+b} - u_{n-b}) - dU/du_n
    M R''    = -dU/dR
    U(R, u)  = sum_{c in stencil(R)} s(|r_c|) phi(r_c),   r_c = a c + u_[c mod L] - R

``b`` runs over the lattice's bond offsets (one of each ``+-b`` pair, ``Phi_b`` from
``lattice.bond_tensors()``), evaluated with ``jnp.roll`` over the whole box; the stencil is the
model's neighbour set (:meth:`IonInFramework.site_cells`), whose unwrapped cells ``c`` are the
minimum images of the sites around ``R`` and whose lattice indices are ``c mod L``
(``model.neighbours.lattice_index``). The pair forces on those sites are scattered into the
lattice force with ``.at[...].add``, so the ion may travel through any number of cells. The
total energy

    E = M |V|^2 / 2 + m sum_n |v_n|^2 / 2 + U(R, u)
      + sum_n [kappa |u_n|^2 + sum_b (u_n - u_{n+b}) Phi_b (u_n - u_{n+b})] / 2

and the total momentum ``M V + m sum_n v_n`` are conserved (the springs and the pair forces are
equal and opposite; with an on-site ``kappa`` only the energy).

Integration: velocity Verlet (kick-drift-kick, one force evaluation per step, symplectic) as
:func:`jaxion.solvers.VelocityVerlet` run by ``diffrax.diffeqsolve``, the same solver the
dimensionless full-lattice method (:mod:`jaxion.full`) uses: the state is the partitioned pytree
``((u, R), (v, V))`` that solver takes, so nothing here re-implements the step. A ``lax.scan`` runs
one solve per save interval on the exact step grid ``k dt`` and hands the solver state (the last
acceleration) on, so the run is one unbroken Verlet trajectory (equal to a bare ``lax.scan`` of
the step to rounding) at ~1.2-1.4x the bare scan's cost per step (L = 10-20).

:class:`FullThermalDynamics` is a description of :mod:`jaxion.dynamics`
(:mod:`jaxion.thermal.trajectory`): built with a step ``dt`` (ps), ``jaxion.dynamics.run(dynamics,
state, t1, saveat=..., stop=...)`` integrates it with the same scan of segments (each segment the
common step interval of the save times, the stop an event of each segment's solve) and returns a
:class:`~jaxion.trajectory.Trajectory` whose energy is conserved (``conservative``). Its
``initial_state(position, velocity, key)`` draws the lattice's thermal state at the description's
``temperature`` from ``key`` (:func:`~jaxion.thermal.modes.thermal_modes`, as :meth:`thermal_state`),
and starts it at rest at ``T = 0`` (classical statistics) without a key.

Finite size (:func:`finite_size`): the box is ``L a`` wide, so the thermal field is periodic in
space with that period (an ion that travels ``L a`` meets the same field pattern again), and sound
crosses the box in ``L a / v_max``; a disturbance the ion makes returns to it after that time.
"""

import math
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..brillouin import periodic_grid, sphere_rule
from ..dynamics import traced_floats
from ..run_checks import FiniteBoxWarning
from ..solvers import VelocityVerlet
from ..stencil import PeriodicStencil, has_transverse_springs
from ..trajectory import Trajectory
from .model import IonInFramework
from .modes import STATISTICS, ThermalModes, thermal_modes
from .trajectory import AbstractThermalDynamics, ThermalTrajectory, poison_after_failure, step_option

# Largest omega * dt accepted (highest phonon, the ion's well). Velocity Verlet is stable up to
# omega dt = 2; at 0.5 the fastest mode's energy oscillates by ~(omega dt)^2 / 4 = 6% and its
# frequency is shifted by ~(omega dt)^2 / 24 = 1%. The follow-up's 5 fs step is at ~0.16.
MAX_PHASE_PER_STEP = 0.5
# Largest lattice mesh (points per axis) searched for the highest phonon frequency.
_FREQUENCY_GRID = 32


class FullThermalDynamics(AbstractThermalDynamics):
    """The ion plus the whole periodic lattice (physics.md 5.4), physical units; a description of
    :mod:`jaxion.dynamics` (module docstring).

    The state is the pytree ``((u, R), (v, V))``: lattice displacements ``u (L, L, L, 3)`` Å,
    unwrapped ion position ``R (3,)`` Å, lattice velocities ``v (L, L, L, 3)`` Å/ps, ion velocity
    ``V (3,)`` Å/ps. Every method is pure in the state (``jax.vmap`` over states for ensembles).

    Attributes:
        model: the :class:`IonInFramework`; its neighbour stencil's ``size`` is the box ``L``.
        transverse: static; ``False`` when every ``k_trans`` is concretely zero at construction
            (the stencil then skips that term, 2.6x faster at L = 20 for central springs; as in
            :class:`jaxion.full.FullLattice`). Build the dynamics outside ``jit`` to keep it: a
            model traced at construction keeps the transverse term.
        temperature: kelvin (``>= 0``), of the lattice :meth:`initial_state` draws from a key.
        statistics: static; ``"classical"`` or ``"quantum"`` lattice of those draws.
        dt: the time step (ps; a Python float) of runs through :func:`jaxion.dynamics.run`, or
            ``None`` (:func:`run_full_thermal` takes its own).
    """

    model: IonInFramework
    transverse: bool = eqx.field(static=True)
    temperature: jax.Array
    statistics: str = eqx.field(static=True)
    dt: float | None

    def __init__(self, model, *, temperature=0.0, statistics="classical", dt=None):
        if not isinstance(model, IonInFramework):
            raise ValueError(f"model must be an IonInFramework, got {type(model).__name__}")
        size = model.size
        if size is None:
            raise ValueError(
                "the full description needs a periodic box: build the model with size=L (e.g. "
                "follow_up_model(u0, size=10)), got size=None"
            )
        offsets = np.asarray(model.neighbours.offsets)
        extent = int(np.max(offsets) - np.min(offsets)) + 1
        if extent > size:  # NeighbourSites refuses this too; kept here as the description's own check
            raise ValueError(
                f"size={size} is smaller than the neighbour stencil ({extent} cells): a site would be seen twice"
            )
        reach = max(abs(c) for offset in model.lattice.offsets for c in offset)
        if size < 2 * reach + 1:
            raise ValueError(
                f"size={size} is smaller than the bonds' stencil (2 x {reach} + 1 cells): a bond's two ends "
                "would be the same site"
            )
        self.model = model
        self.transverse = has_transverse_springs(model.lattice)
        self.temperature = jnp.asarray(temperature, dtype=float)
        _checks.require_shape("temperature", self.temperature, ())
        _checks.require_positive("temperature (K)", self.temperature, allow_zero=True)
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        self.statistics = statistics
        self.dt = step_option(dt)

    @property
    def size(self):
        """``L``, cells per axis (static)."""
        return self.model.size

    @property
    def lattice_shape(self):
        """``(L, L, L, 3)``."""
        return (self.size,) * 3 + (3,)

    # ------------------------------------------------------------------ state

    def initial_state(self, position, velocity, key=None, lattice_velocities=None, *, lattice_displacements=None):
        """The state ``((u, R), (v, V))`` from the ion's ``position``/``velocity`` ``(3,)`` (Å, Å/ps)
        and the lattice's displacements/velocities ``(L, L, L, 3)`` (Å, Å/ps).

        The lattice: the given arrays (either ``None``: that part at rest); else, with ``key``, a
        thermal state at the description's ``temperature`` and ``statistics`` drawn from it
        (:func:`~jaxion.thermal.modes.thermal_modes`, what a physicist starting a thermal run
        expects); else at rest, which is the thermal state only at ``T = 0`` with classical
        statistics (anything else needs a key). A float array of the lattice's shape in place of
        ``key`` is read as ``lattice_displacements`` (the former positional form
        ``initial_state(R, V, u, v)``).

        Raises:
            ValueError: a wrong shape or a non-finite entry (named), checked on concrete values; a
            key together with lattice arrays; no key where the lattice is thermal.
        """
        if key is not None and not _is_key(key):  # initial_state(R, V, u, v)
            if lattice_displacements is not None:
                raise ValueError("lattice_displacements given twice (as the third argument and by name)")
            key, lattice_displacements = None, key
        given = lattice_displacements is not None or lattice_velocities is not None
        if key is not None:
            if given:
                raise ValueError("give a key (a thermal lattice drawn at the description's temperature) or the "
                                 "lattice's displacements and velocities, not both")
            modes = thermal_modes(self.model.lattice, self.size, self.temperature, key, statistics=self.statistics)
            return self.thermal_state(position, velocity, modes)
        if not given and not (self.statistics == "classical" and _checks.is_concrete(self.temperature)
                              and float(self.temperature) == 0.0):
            raise ValueError(f"a key is needed to draw the lattice's thermal state ({self.statistics} statistics, T = "
                             f"{self.temperature} K), or pass lattice_displacements and lattice_velocities")
        position = jnp.asarray(position, dtype=float)
        velocity = jnp.asarray(velocity, dtype=float)
        rest = jnp.zeros(self.lattice_shape)
        u = rest if lattice_displacements is None else jnp.asarray(lattice_displacements, dtype=float)
        v = rest if lattice_velocities is None else jnp.asarray(lattice_velocities, dtype=float)
        state = ((u, position), (v, velocity))
        self.check_state(state)
        return state

    def thermal_state(self, position, velocity, modes, t=0.0):
        """The state with the lattice in the sampled normal-mode state ``modes`` at time ``t`` (ps)
        (:func:`jaxion.thermal.modes.thermal_modes`, physics.md 5.1) and the ion at ``position``
        with ``velocity``."""
        if not isinstance(modes, ThermalModes):
            raise ValueError(
                f"modes must be ThermalModes (jaxion.thermal.modes.thermal_modes), got {type(modes).__name__}"
            )
        if modes.size != self.size:
            raise ValueError(f"the thermal modes' box (size={modes.size}) must be the model's (size={self.size})")
        return self.initial_state(position, velocity, lattice_displacements=modes.displacements(t),
                                  lattice_velocities=modes.velocities(t))

    def check_state(self, state):
        """``ValueError`` naming the part of ``state`` with a wrong shape or a NaN/inf entry
        (shapes always; values only when concrete)."""
        (u, position), (v, velocity) = state
        parts = {
            "ion position": (position, (3,)),
            "ion velocity": (velocity, (3,)),
            "lattice displacements": (u, self.lattice_shape),
            "lattice velocities": (v, self.lattice_shape),
        }
        for name, (value, shape) in parts.items():
            _checks.require_shape(f"{name} (size={self.size})", value, shape)
        for name, (value, _) in parts.items():
            if _checks.is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
                bad = int(np.sum(~np.isfinite(np.asarray(value))))
                raise ValueError(f"the {name} must be finite, got {bad} NaN/inf entries")

    @staticmethod
    def position(state):
        """Unwrapped ion position ``R (3,)``, Å."""
        return state[0][1]

    @staticmethod
    def velocity(state):
        """Ion velocity ``V (3,)``, Å/ps."""
        return state[1][1]

    # ------------------------------------------------------------------ forces (written once)

    @property
    def stencil(self):
        """The framework's :class:`~jaxion.stencil.PeriodicStencil` (built on use from the model's lattice)."""
        return PeriodicStencil(self.model.lattice, self.size, self.transverse)

    def spring_force(self, u):
        """``-kappa u_n - sum_b Phi_b (2 u_n - u_{n+b} - u_{n-b})`` for ``u (L, L, L, 3)``, meV/Å: the
        framework's :class:`~jaxion.stencil.PeriodicStencil` on the component-major view of ``u``. A whole
        Verlet step is 1.5x (L = 10) to 2.5x (L = 30) faster than with ``jnp.roll`` shifts of the
        ``(L, L, L, 3)`` array, whose forces it equals bitwise for central springs."""
        return jnp.moveaxis(self.stencil.spring_force(jnp.moveaxis(u, -1, 0)), 0, -1)

    def site_index(self, position):
        """Lattice indices (three ``(C,)`` integer arrays) of the stencil's sites around ``position``."""
        cells = self.model.neighbours.lattice_index(self.model.site_cells(position))
        return tuple(cells.T)

    def forces(self, q):
        """Forces at positions ``q = (u, R)``: on the lattice ``(L, L, L, 3)`` and on the ion ``(3,)``,
        meV/Å. The pair forces ``-dU/du`` on the stencil's sites (gathered at their lattice indices)
        are scattered back into the springs' force with ``.at[...].add``."""
        u, position = q
        index = self.site_index(position)
        grad_ion, grad_sites = jax.grad(self.model.interaction, argnums=(0, 1))(position, u[index])
        return self.spring_force(u).at[index].add(-grad_sites), -grad_ion

    def accelerations(self, q):
        """``(u'', R'')`` at ``q = (u, R)``, Å/ps^2."""
        on_lattice, on_ion = self.forces(q)
        return on_lattice / self.model.lattice.mass, on_ion / self.model.ion_mass

    # ------------------------------------------------------------------ conserved quantities

    def energy(self, state):
        """Total energy ``E`` (module docstring), meV: ion and lattice kinetic, springs, interaction."""
        (u, position), (v, velocity) = state
        kinetic = 0.5 * self.model.ion_mass * jnp.sum(velocity**2) + 0.5 * self.model.lattice.mass * jnp.sum(v**2)
        springs = -0.5 * jnp.sum(u * self.spring_force(u))
        return kinetic + springs + self.model.interaction(position, u[self.site_index(position)])

    def momentum(self, state):
        """Total momentum ``M V + m sum_n v_n``, ``(3,)`` in meV ps/Å."""
        (_, _), (v, velocity) = state
        return self.model.ion_mass * velocity + self.model.lattice.mass * jnp.sum(v, axis=(0, 1, 2))

    # ------------------------------------------------------------------ time step

    def highest_frequency(self):
        """Highest phonon angular frequency of the box, rad/ps: the maximum over its own wave
        vectors (``L <= 32``) or over a ``32^3`` mesh (zone boundary included) for larger boxes."""
        return float(np.sqrt(np.max(_eigenvalues(self.model.lattice, min(self.size, _FREQUENCY_GRID)))))

    def well_frequency(self, position=None):
        """``sqrt(max |eig H| / M)`` in rad/ps, ``H`` the Hessian of the rigid landscape at the cell
        centre ``(a/2, a/2, a/2)`` (the well of a repulsive stencil) and, if given, at ``position``."""
        centre = jnp.full(3, 0.5) * self.model.lattice.spacing
        points = jnp.stack([centre, centre if position is None else jnp.asarray(position, dtype=float)])
        return math.sqrt(float(_largest_curvature(self.model, points)) / float(self.model.ion_mass))

    def check_step(self, dt, position=None):
        """``ValueError`` unless ``omega dt <= MAX_PHASE_PER_STEP`` for the highest phonon and the
        ion's well (:meth:`well_frequency`, at ``position`` too if concrete). Evaluated at trace
        time when called under ``jit`` with concrete parameters."""
        if position is not None and not _checks.is_concrete(position):
            position = None
        with jax.ensure_compile_time_eval():
            phonon = self.highest_frequency()
            well = self.well_frequency(position)
        fastest = max(phonon, well)
        if not dt * fastest <= MAX_PHASE_PER_STEP:
            raise ValueError(
                f"dt = {dt:g} ps is too large: the highest phonon frequency is {phonon:.4g} rad/ps and the ion's "
                f"well {well:.4g} rad/ps, so omega dt = {dt * fastest:.3g} > {MAX_PHASE_PER_STEP} (velocity Verlet is "
                f"stable below 2, accurate below {MAX_PHASE_PER_STEP}); use dt <= {MAX_PHASE_PER_STEP / fastest:.3g} ps"
            )

    def terms(self):
        """diffrax terms ``(drift, kick)`` for :class:`jaxion.solvers.SymplecticComposition`."""
        return diffrax.ODETerm(_Drift()), diffrax.ODETerm(_Kick(self))

    # ------------------------------------------------------------------ the interface (jaxion.dynamics)

    def ion(self, state):
        return self.position(state), self.velocity(state)

    def check(self, position, velocity, duration):
        """:meth:`check_step` with the description's ``dt`` at ``position``."""
        self.check_step(self.step(), position)

    def integrate(self, state, t1, save_times, stop=None, key=None, progress=False):
        """Velocity Verlet from ``state`` for the ``t1 / dt`` steps (``key`` and ``progress`` are not
        used: no noise, no progress meter), as :func:`run_full_thermal`: a scan of segments, each
        the common step interval of the save times (concrete; saved at the step points nearest to
        them), with the stop an event of each segment's solve; a stopped run's later segments end
        at once."""
        self.check_state(state)
        n_steps = self.n_steps(t1)
        if not _checks.is_concrete(save_times):
            raise ValueError("the full thermal description saves at its step points: save_times must be concrete")
        index = np.rint(np.asarray(save_times, dtype=float) / self.dt).astype(int)
        if index.ndim != 1 or np.any(index < 0) or np.any(index > n_steps):
            raise ValueError(f"save_times must be a (T,) array of times in [0, t1 = {n_steps * self.dt:g}] ps")
        every = int(np.gcd.reduce(np.append(index, n_steps)))
        return _integrate(traced_floats(self), state, n_steps // every, every, jnp.asarray(index // every), stop)


def _eigenvalues(lattice, size):
    """``omega^2 (size^3, 3)`` on the periodic mesh (Gamma first), rad^2/ps^2: ``D(q)`` by JAX
    (at trace time under ``jit``), eigenvalues by NumPy (the eager JAX ``eigh`` compiles for seconds)."""
    with jax.ensure_compile_time_eval():
        matrices = np.asarray(lattice.dynamical_matrix(periodic_grid(size, 3)))
    return np.linalg.eigvalsh(matrices)


@eqx.filter_jit
def _largest_curvature(model, points):
    """``max |eig H(R)|`` over ``points (P, 3)`` (compiled: the eager Hessian of a large stencil
    dispatches thousands of small operations)."""
    hessians = jax.vmap(model.hessian)(points)
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(hessians)))


class _Drift(eqx.Module):
    """``d(u, R)/dt = (v, V)``."""

    def __call__(self, t, p, args):
        return p


class _Kick(eqx.Module):
    """``d(v, V)/dt = (u'', R'')``."""

    dynamics: FullThermalDynamics

    def __call__(self, t, q, args):
        return self.dynamics.accelerations(q)


class _Observe(eqx.Module):
    """Saved at each save time: ion position, velocity and the total energy."""

    dynamics: FullThermalDynamics

    def __call__(self, t, y, args):
        return self.dynamics.position(y), self.dynamics.velocity(y), self.dynamics.energy(y)


class _StopEvent(eqx.Module):
    """Event condition of a segment: the run has stopped already, or ``stop`` holds on the ion."""

    dynamics: FullThermalDynamics
    stop: eqx.Module
    stopped: jax.Array

    def __call__(self, t, y, args, **kwargs):
        return self.stopped | jnp.asarray(self.stop(t, *self.dynamics.ion(y)), dtype=bool)


def _is_key(value):
    """Whether ``value`` is a PRNG key (typed, or a legacy ``uint32 (2,)`` one)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
                                  or (dtype == np.uint32 and np.shape(value) == (2,)))


class FullThermalRun(eqx.Module):
    """A full thermal run (batched runs add a leading axis to every field).

    Attributes:
        ts: ``(T,)`` save times, ps.
        positions: ``(T, 3)`` unwrapped ion positions, Å.
        velocities: ``(T, 3)`` ion velocities, Å/ps.
        energy: ``(T,)`` total energy, meV (conserved).
        finite: scalar bool, ``False`` if the run stopped being finite (NaN from then on).
        energy_drift: ``max_t |E(t) - E(0)|`` over the saves, meV (the integration error; divide
            by ``|energy[0]|`` for the relative drift).
        final_state: the state ``((u, R), (v, V))`` at the end (to continue the run).
    """

    ts: jax.Array
    positions: jax.Array
    velocities: jax.Array
    energy: jax.Array
    finite: jax.Array
    energy_drift: jax.Array
    final_state: tuple

    @property
    def trajectory(self):
        """The :class:`~jaxion.thermal.trajectory.ThermalTrajectory` every thermal description returns."""
        return ThermalTrajectory(self.ts, self.positions, self.velocities, self.energy, self.finite)


def run_full_thermal(dynamics, state, t1, dt, *, save_every=1):
    """Integrate the full thermal description from ``state`` for ``t1`` ps with step ``dt`` ps.

    Velocity Verlet (:func:`jaxion.solvers.VelocityVerlet`) through ``diffrax.diffeqsolve`` on the
    step grid ``k dt``, one force evaluation per step, the whole solve compiled (no host
    round-trips; ``dt`` is traced, so runs differing only in ``dt`` share a compile). Pure in
    ``state``: ``jax.vmap`` over a batch of states runs an ensemble; under ``jit`` the checks run
    at trace time. Differentiable (reverse mode through diffrax's checkpointed loop).

    Args:
        dynamics: the :class:`FullThermalDynamics` (its own ``dt``, for :func:`jaxion.dynamics.run`,
            is not used here).
        state: ``((u, R), (v, V))`` from :meth:`FullThermalDynamics.initial_state` (or
            :meth:`~FullThermalDynamics.thermal_state`).
        t1: duration, ps (concrete); rounded up to a whole number of save intervals.
        dt: time step, ps (concrete).
        save_every: steps between saves (a positive integer).

    Returns:
        :class:`FullThermalRun` with ``T = n_steps / save_every + 1`` saves at ``ts = k save_every dt``
        (``.trajectory`` is the :class:`~jaxion.thermal.trajectory.ThermalTrajectory`).

    Raises:
        ValueError: ``dt`` too large for the highest phonon or the ion's well (the numbers are
            named), bad ``t1``/``dt``/``save_every``, a malformed or non-finite state.
    """
    if not isinstance(dynamics, FullThermalDynamics):
        raise ValueError(f"dynamics must be a FullThermalDynamics, got {type(dynamics).__name__}")
    _checks.require_run_length(t1, dt)
    _checks.require_integer("save_every", save_every, low=1)
    dynamics.check_state(state)
    t1, dt = float(t1), float(dt)
    if _checks.is_concrete(dynamics):
        dynamics.check_step(dt, dynamics.position(state))
    n_saves = max(1, int(math.ceil(t1 / (dt * save_every) * (1.0 - 1e-12))))
    # a traced dt: one compile for all steps
    return _solve(traced_floats(dynamics), state, n_saves, save_every, jnp.asarray(dt))


def _segments(dynamics, state, n_segments, every, dt, stop=None):
    """``lax.scan`` over ``n_segments`` segments, each a diffrax solve of ``every`` steps that hands the
    solver state (the last acceleration) to the next, so the whole run is one unbroken Verlet
    trajectory with one force evaluation per step. (Saving through ``SaveAt(ts=..., fn=...)``
    instead copies the step's dense output, two lattice states, in every step: 2x slower per step at
    L = 20.) With a ``stop``, each segment's solve ends at the end of the first step where it holds
    (or at once, once the run has stopped).

    Returns:
        ``(final_state, (positions, velocities, energies), ends)``: the observations at the start and
        at each segment's end (``(n_segments + 1, ...)``) and, with a stop, per segment ``(time
        reached, whether the stop held, whether the segment's end was reached)`` (``None`` without).
    """
    terms, solver = dynamics.terms(), VelocityVerlet()
    observe = _Observe(dynamics)

    def segment(carry, k):
        y, acceleration, stopped = carry
        # the step times k dt, each computed directly (a constant step size accumulates rounding and
        # then takes an extra tiny step at some interval ends)
        times = (k * every + jnp.arange(every + 1)) * dt
        solution = diffrax.diffeqsolve(
            terms, solver, t0=times[0], t1=times[-1], dt0=None, y0=y, solver_state=acceleration,
            made_jump=False, saveat=diffrax.SaveAt(t1=True, solver_state=True),
            stepsize_controller=diffrax.StepTo(ts=times), max_steps=every, throw=False,
            event=None if stop is None else diffrax.Event(_StopEvent(dynamics, stop, stopped)),
        )
        y = jax.tree.map(lambda x: x[-1], solution.ys)
        if stop is None:
            return (y, solution.solver_state, None), (observe(None, y, None), None)
        end = solution.ts[-1]
        ended = (end, solution.event_mask, end >= times[-1])
        return (y, solution.solver_state, stopped | solution.event_mask), (observe(None, y, None), ended)

    start = (state, dynamics.accelerations(state[0]), None if stop is None else jnp.zeros((), dtype=bool))
    (final_state, _, _), (saved, ends) = jax.lax.scan(segment, start, jnp.arange(n_segments))
    saved = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), observe(None, state, None), saved)
    return final_state, saved, ends


@eqx.filter_jit
def _solve(dynamics, state, n_saves, save_every, dt):
    """:func:`_segments` over the ``n_saves`` save intervals, and the run's diagnostics."""
    final_state, (positions, velocities, energy), _ = _segments(dynamics, state, n_saves, save_every, dt)
    ts = jnp.arange(n_saves + 1) * (save_every * dt)
    drift = jnp.max(jnp.abs(energy - energy[0]))
    finite, positions, velocities, energy = poison_after_failure(positions, velocities, energy)
    return FullThermalRun(ts, positions, velocities, energy, finite, jnp.where(finite, drift, jnp.nan), final_state)


@eqx.filter_jit
def _integrate(dynamics, state, n_segments, every, saves, stop):
    """:meth:`FullThermalDynamics.integrate`: :func:`_segments` of ``every`` steps, saved at the
    segment ends ``saves (T,)`` (``inf`` past a stop), as a :class:`~jaxion.trajectory.Trajectory`."""
    dt = dynamics.dt
    _, (positions, velocities, energy), ends = _segments(dynamics, state, n_segments, every, dt, stop)
    t_final = (n_segments * every) * dt
    reached = jnp.ones(n_segments + 1, dtype=bool)
    if stop is not None:
        end_times, stopped, whole = ends
        reached = reached.at[1:].set(whole)
        t_final = jnp.where(jnp.any(stopped), end_times[jnp.argmax(stopped)], t_final)
    reached = reached[saves]

    def shown(saved):
        return jnp.where(reached.reshape((-1,) + (1,) * (saved.ndim - 1)), saved[saves], jnp.inf)

    return Trajectory(
        ts=jnp.where(reached, (saves * every) * dt, jnp.inf),
        position=shown(positions),
        velocity=shown(velocities),
        energy=shown(energy),
        t_final=t_final,
        # the last segment ends at the final state (a stopped run's later segments keep it)
        position_final=positions[-1],
        velocity_final=velocities[-1],
        energy_final=energy[-1],
        conservative=True,
    )


# ---------------------------------------------------------------------- finite size


class FiniteSize(NamedTuple):
    """Finite-size scales of a periodic ``L^3`` box (physics.md 5.4).

    Attributes:
        box_length: ``L a``, Å: the spatial period of the thermal field and of the ion's images.
        crossing_time: ``L a / v_max``, ps: sound (the fastest branch and direction) crosses the
            box; a disturbance the ion makes returns to it after about this time.
        slowest_crossing_time: ``L a / v_min``, ps, for the slowest branch and direction.
        longest_period: ``2 pi / omega_min``, ps, the slowest mode of the box: the field's spectrum
            is discrete on this time scale (its correlations recur rather than decay).
    """

    box_length: float
    crossing_time: float
    slowest_crossing_time: float
    longest_period: float


def finite_size(dynamics):
    """The :class:`FiniteSize` scales of ``dynamics``'s box (concrete lattice parameters).

    Sound speeds ``v_u(n) = a sqrt(eig S(n))`` in Å/ps (``S`` the long-wave tensor,
    ``lattice.sound_speeds / 2 pi``: the lattice's frequencies are angular, rad/ps, here), over a
    sphere of directions plus the cube's axes and face and body diagonals (where a cubic
    lattice's extremes lie).
    """
    lattice, size = dynamics.model.lattice, dynamics.size
    with jax.ensure_compile_time_eval():
        speeds = np.asarray(lattice.sound_speeds(_directions())) / (2.0 * np.pi)
    omega = np.sqrt(np.clip(_eigenvalues(lattice, size)[1:], 0.0, None))
    box = size * float(lattice.spacing)
    return FiniteSize(box, box / float(speeds.max()), box / float(speeds[speeds > 0].min()),
                      2.0 * np.pi / float(omega[omega > 0].min()))


def _directions():
    """Unit directions ``(P, 3)``: a sphere rule plus the 13 symmetry directions of the cube."""
    cube = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1],
                     [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=float)
    cube /= np.linalg.norm(cube, axis=1, keepdims=True)
    return np.concatenate([np.asarray(sphere_rule(12, 24)[0]), cube])


def warn_finite_size(dynamics, duration, travel=None):
    """Warn (:class:`~jaxion.run_checks.FiniteBoxWarning`) when a run of ``duration`` ps outlasts the
    sound crossing time of the box, or when the ion travels ``travel`` Å, more than the field's
    spatial period ``L a``. Returns the :class:`FiniteSize`."""
    scales = finite_size(dynamics)
    if duration > scales.crossing_time:
        _checks.warn(
            f"the run ({duration:.4g} ps) outlasts the time sound takes to cross the periodic box of "
            f"{dynamics.size} cells ({scales.crossing_time:.4g} ps): what the ion radiates comes back to it",
            FiniteBoxWarning)
    if travel is not None and travel > scales.box_length:
        _checks.warn(
            f"the ion travels {travel:.4g} Å, more than the box ({scales.box_length:.4g} Å): it meets the same "
            "thermal field pattern again",
            FiniteBoxWarning)
    return scales
