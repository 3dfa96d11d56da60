"""The whole periodic lattice plus the ion (physics.md sections 1-3, Eqs. 3-4), through diffrax.

State ``y = (q, p)`` with ``q = (halo, sigma)`` and ``p = (rho', sigma')``:

* ``rho'``: the framework velocities as a tuple of three components, each ``(L,)`` (chain) or
  ``(L, L, L)`` (cubic): separate contiguous scalar fields. Every pass over the lattice (a drift,
  a kick) is then three loops of ``L^dim`` cells, which XLA:CPU splits evenly over its threads
  and which each compute one component's force. One ``(3, L, ...)`` array instead makes one
  loop whose outer axis of 3 the threads share 2 + 1; the split state's symplectic step is
  1.25x (L = 100) to 1.4x (L = 64) faster;
* ``halo``: the displacements ``rho`` kept already wrapped, three components ``(L + 2w, ...)``
  with a periodic halo of ``w`` cells (the bonds' reach) on every face: ``halo = G rho`` with
  ``G`` the periodic embedding (:meth:`jaxion.stencil.PeriodicStencil.wrap`, the halo form the
  spring stencil reads). The drift is ``dq/dtau = G rho'``,
  which is linear, so the halo stays an exact copy of the opposite faces and the force never
  rebuilds it (one pass over memory less per force evaluation: 1.5x faster per symplectic stage
  at L = 100);
* ``sigma``: ``(3,)`` ion position.

``rho`` as one ``(3, L, ...)`` array (``FullLattice.shape``) is what
:meth:`~jaxion.stencil.PeriodicStencil.spring_force` takes and returns; :meth:`FullLattice.wrap`
accepts either form.

Equations of motion (dots are d/dtau, tau in periods):

    rho''   = -4 pi^2 [W rho + grad_rho Phi(rho_S, sigma) / m]                     (Eq. 4)
    sigma'' = -(4 pi^2 / mu) grad_sigma Phi(rho_S, sigma)   (zero on pinned axes)  (Eq. 3)
    m (W rho)_n = kappa rho_n + sum_{b, +-} Phi_b (rho_n - rho_{n+b})

The harmonic force ``-m W rho`` is the framework's periodic stencil over bond pairs ``+-b``
(:class:`jaxion.stencil.PeriodicStencil`, :attr:`FullLattice.stencil`), applied to the halo.
The interaction acts on the listed sites only, at their actual displaced positions; site cells
map into the box modulo ``L``. Conserved:

    E = sum_i mu_i sigma_i'^2 / 8 pi^2 + m |rho'|^2 / 8 pi^2 + m rho^T W rho / 2 + Phi.

Solvers (``solver=``): ``"tsit5"`` (5th order, fixed ``dt`` or adaptive with ``rtol``/``atol``),
``"dopri5"``, ``"dopri8"``, ``"verlet"`` (velocity Verlet, order 2, one force per step) and
``"symplectic"`` (Blanes-Moan order 4, six forces per step; the recommended solver for large
lattices, see ``jaxion.solvers``). The Runge-Kutta tableaux run in Nystroem form
(:class:`jaxion.solvers.RungeKuttaNystrom`: diffrax's step to rounding, ~4x faster at L = 100).

``dtype=jnp.float32`` runs the whole state (and the times: diffrax promotes the state to the
dtype of the times) in single precision: half the memory traffic, so up to twice the speed on
bandwidth-bound machines, for trajectories and exploratory runs. Rounding (1e-7 relative) then
limits the ion's velocity to ~1e-7 v, so single-pass losses below ~1e-6 of the kinetic energy
need float64. The saved energies are summed in float64.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .dynamics import AbstractDiffraxDynamics, CrossedPlane, run_from
from .response import max_sound_speed
from .run_checks import BOX_TOL, FiniteBoxWarning, holding_size, require_step, run_duration
from .solvers import TABLEAUX, BlanesMoan, Rate, RungeKuttaNystrom, VelocityVerlet, runge_kutta_stability_limit
from .stencil import PeriodicStencil, has_transverse_springs
from .system import System

FOUR_PI2 = 4.0 * math.pi**2

# the solvers by name: diffrax's tableaux in Nystroem form (jaxion.solvers.TABLEAUX) and the symplectic ones
_SYMPLECTIC = {"verlet": VelocityVerlet, "symplectic": BlanesMoan}
SOLVERS = tuple(TABLEAUX) + tuple(_SYMPLECTIC)
# Interacting sites plus this many potential ranges on each side must fit in one period of the box.
_RANGE_MARGIN = 3.0


class FullLattice(eqx.Module):
    """The ion plus a periodic ``L^dim`` lattice: vector field, energy and observables.

    Attributes:
        system: the :class:`~jaxion.System`.
        size: ``L``, masses per lattice axis (static).
        dtype: dtype of the state (and of the solver's times), float64 or float32 (static).
        site_index: static tuple of ``dim`` integer tuples: the sites' cells modulo ``L``.
        transverse: static; ``False`` when every ``k_trans`` is concretely zero (skips that term).
    """

    system: System
    size: int = eqx.field(static=True)
    dtype: type = eqx.field(static=True)
    site_index: tuple = eqx.field(static=True)
    transverse: bool = eqx.field(static=True)

    def __init__(self, system, size, dtype=jnp.float64):
        if not isinstance(system, System):
            raise ValueError(f"system must be a jaxion System, got {type(system).__name__}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3:
            raise ValueError(f"size must be an integer number of masses per axis >= 3, got {size!r}")
        if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
            raise ValueError(f"dtype must be jnp.float32 or jnp.float64, got {dtype!r}")
        self.system = system
        self.size = int(size)
        self.dtype = jnp.dtype(dtype).type
        self.transverse = has_transverse_springs(system.lattice)
        if self.size < self.width:
            raise ValueError(f"size={size} is smaller than the bonds' reach of {self.width} cells: the box must be larger")
        cells = np.mod(system.site_cells, self.size)
        if len({tuple(c) for c in cells}) != len(cells):
            raise ValueError(
                f"sites {system.sites} fall on the same mass modulo size={size}: the box must be larger"
            )
        self.site_index = tuple(tuple(int(c) for c in column) for column in cells.T)

    @property
    def stencil(self):
        """The spring stencil of the system's lattice in the box (:class:`~jaxion.stencil.PeriodicStencil`),
        built on each use from ``system.lattice``, so derivatives with respect to the system reach the springs."""
        return PeriodicStencil(self.system.lattice, self.size, self.transverse)

    @property
    def shape(self):
        """``(3, L, ...)``: shape of ``rho`` (the stencil's)."""
        return self.stencil.shape

    @property
    def width(self):
        """``w``: the halo width, the bonds' reach (cells)."""
        return self.stencil.width

    def wrap(self, rho):
        """``G rho`` (:meth:`~jaxion.stencil.PeriodicStencil.wrap`): three ``(L, ...)`` -> three ``(L + 2w, ...)``."""
        return self.stencil.wrap(rho)

    def _sites(self, halo):
        """Displacements of the interacting sites, ``(S, 3)``, from the wrapped displacements."""
        cells = tuple(tuple(i + self.width for i in axis) for axis in self.site_index)
        return jnp.stack([component[cells] for component in halo], axis=-1)

    def _interaction_accelerations(self, q):
        """The interaction's accelerations at ``q = (halo, sigma)``: on the sites ``(3, S)``
        (Eq. 4, ``-4 pi^2 grad_rho Phi / m``) and on the ion ``(3,)`` (Eq. 3)."""
        halo, sigma = q
        grad_sites, grad_ion = jax.grad(self.system.interaction, argnums=(0, 1))(
            self._sites(halo).astype(sigma.dtype), sigma
        )
        on_sites = (-FOUR_PI2 / self.system.lattice.mass * grad_sites.T).astype(halo[0].dtype)
        return on_sites, (-FOUR_PI2 * self.system.inverse_mass * grad_ion).astype(sigma.dtype)

    def acceleration(self, q):
        """``(rho'', sigma'')`` (three ``(L, ...)`` and ``(3,)``) for positions ``q = (halo, sigma)`` (Eqs. 3-4)."""
        on_sites, on_ion = self._interaction_accelerations(q)
        rho_ddot = self.stencil.force(q[0], FOUR_PI2 / self.system.lattice.mass)
        return self._add_at_sites(rho_ddot, on_sites), on_ion

    def _add_at_sites(self, rho, on_sites):
        """``rho`` (three ``(L, ...)``) plus ``on_sites`` ``(3, S)`` at the sites, in place."""
        return tuple(component.at[self.site_index].add(value) for component, value in zip(rho, on_sites))

    def energy(self, y):
        """Total energy ``E`` (module docstring) of the state ``y = ((halo, sigma), (rho', sigma'))``, float64."""
        (halo, sigma), (rho_dot, sigma_dot) = y
        mass = self.system.lattice.mass
        wide = lambda x: x.astype(jnp.float64)
        total = lambda fields: sum(jnp.sum(wide(field)) for field in fields)
        kinetic = mass * total(v**2 for v in rho_dot) / (2.0 * FOUR_PI2)
        stencil = self.stencil
        harmonic = -0.5 * total(r * f for r, f in zip(stencil.interior(halo), stencil.force(halo)))
        ion = self.system.total_energy(wide(self._sites(halo)), sigma, sigma_dot)
        return ion + kinetic + harmonic

    def initial_state(self, position, velocity):
        """Framework at rest, ion at ``position`` with ``velocity``: ``((halo, sigma), (rho', sigma'))``."""
        rest = (jnp.zeros(self.shape[1:], self.dtype),) * 3
        return (self.wrap(rest), jnp.asarray(position, self.dtype)), (rest, jnp.asarray(velocity, self.dtype))

    def observe(self, t, y, args, save_sites=False):
        """What a :class:`~jaxion.trajectory.Trajectory` keeps of a state: ion position,
        velocity, total energy and (optionally) the site displacements ``(S, 3)``."""
        (halo, sigma), (_, sigma_dot) = y
        out = dict(position=sigma, velocity=sigma_dot, energy=self.energy(y))
        if save_sites:
            out["sites"] = self._sites(halo).astype(jnp.float64)
        return out

    def terms(self):
        """diffrax terms ``(drift, kick)``, the partitioned form every solver here takes. The
        vector fields are modules (not closures) so repeated calls reuse the compiled solve."""
        return Rate(_Drift(self)), _KickRate(_Kick(self))

    def highest_frequency(self):
        """Estimate of the highest lattice frequency ``omega_max`` (units of ``Omega``): the
        maximum over the periodic grid of ``min(L, 16)`` points per axis (zone boundary included
        for even grids). The ion-site curvature is not included."""
        return float(self.system.lattice.highest_frequency(min(self.size, 16)))



class _KickRate(Rate):
    """The kick term ``dp/dtau = a(q)`` (:class:`_Kick`), whose increment ``vf_prod`` fuses into
    the solver's update ``p + vf_prod(t, q, args, dtau)``."""

    def vf_prod(self, t, y, args, control):
        """``dtau a(q)``, the numbers of ``prod(vf(t, q, args), dtau)``: ``dtau (S(q) + F)`` with
        ``S`` the spring force and ``F`` the sites' terms, here spread over the lattice by
        :func:`_spread` rather than scattered. With no scatter XLA fuses the whole increment into
        the symplectic solvers' kick ``p + dtau a(q)``, one pass that writes no acceleration array
        (a scatter's result is written out whole: one more write and read of the state per kick,
        ~25% of a Blanes-Moan step at L = 48). ``dtau`` multiplies the stencil's result rather
        than entering its spring constants, which would recompute the scaled constants per
        lattice site (~20% slower at L = 100)."""
        model = self.rate.model
        on_sites, on_ion = model._interaction_accelerations(y)
        springs = model.stencil.force(y[0], FOUR_PI2 / model.system.lattice.mass)
        step = jnp.asarray(control, model.dtype)
        rho = tuple(step * (force + spread) for force, spread in zip(springs, _spread(model, on_sites)))
        return rho, step * on_ion


def _spread(model, on_sites):
    """Site values ``(3, S)`` as three lattice arrays ``(L, ...)``, zero off the sites: scattered
    into the smallest periodic box holding the sites (:func:`_cyclic_span`), zero-padded to the
    lattice and rolled into place, so that beyond the box's few values it is all pads and slices,
    which fuse into an elementwise consumer."""
    starts, extents = zip(*(_cyclic_span(axis, model.size) for axis in model.site_index))
    inside = tuple(tuple((i - start) % model.size for i in axis) for axis, start in zip(model.site_index, starts))
    padding = [(0, model.size - extent) for extent in extents]
    axes = tuple(range(len(extents)))
    boxes = (jnp.zeros(extents, v.dtype).at[inside].add(v) for v in on_sites)
    return tuple(jnp.roll(jnp.pad(box, padding), starts, axes) for box in boxes)


def _cyclic_span(indices, size):
    """``(start, extent)`` of the shortest run of cells ``start, ..., start + extent - 1`` modulo
    ``size`` holding every index: it begins after the largest cyclic gap between them."""
    points = sorted(set(indices))
    gap, last = max(((points[(k + 1) % len(points)] - points[k]) % size or size, k) for k in range(len(points)))
    return points[(last + 1) % len(points)], size - gap + 1


class _Drift(eqx.Module):
    """``dq/dtau = (G rho', sigma')``: linear in ``p``, as the Runge-Kutta-Nystroem form needs."""

    model: FullLattice

    def __call__(self, t, p, args):
        rho_dot, sigma_dot = p
        return self.model.wrap(rho_dot), sigma_dot


class _Kick(eqx.Module):
    """``dp/dtau = a(q)``, with ``q`` first written to memory (:func:`_written`)."""

    model: FullLattice

    def __call__(self, t, q, args):
        return self.model.acceleration(_written(q))


def _written(q):
    """``q = (halo, sigma)`` unchanged: each displacement divided by ``1 + 0 x``, exactly 1 for
    finite ``x``.

    XLA:CPU fuses a cheap elementwise producer into every consumer, and the stencil reads each
    displacement ~11 times per force component: a Runge-Kutta stage's positions, a combination of
    up to seven arrays, were recomputed at every read (the Tsit5 step 1.9x slower at L = 64). A
    division counts as expensive, so XLA computes the positions once and the stencil reads them.
    (A division by a run-time scalar is not enough: in float32 XLA turns it into a multiplication
    by the reciprocal, which is cheap again.) Where ``q`` is already in memory (the symplectic
    solvers' last stage) it costs one pass per step.
    """
    halo, sigma = q
    return tuple(component / (1.0 + 0.0 * component) for component in halo), sigma


class FullDynamics(AbstractDiffraxDynamics):
    """The ion plus the whole periodic lattice as a description (:mod:`jaxion.dynamics`): the physics
    of :class:`FullLattice` with its solver and step.

    Attributes:
        lattice: the :class:`FullLattice` (the system, the box of ``L`` masses per axis, the dtype).
        dt: time step (periods; a number, traced by the solve): fixed, or the first step when adaptive.
        solver_name: static, one of ``SOLVERS``.
        rtol, atol: static adaptive step control (PID, Runge-Kutta solvers), or ``None`` for fixed steps.
        save_sites: static; also save the interacting sites' displacements ``(T, S, 3)``.
        box_tol: static tolerance of the returning-sound warning (:func:`check_sound_return`), or ``None``.

    The state is ``((halo, sigma), (rho', sigma'))`` (module docstring). Build it for a run with
    :meth:`build`, which with ``size=None`` sizes a box that holds the run (:func:`infinite_lattice_size`).
    """

    lattice: FullLattice
    dt: float
    solver_name: str = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    save_sites: bool = eqx.field(static=True)
    box_tol: float | None = eqx.field(static=True)

    def __init__(self, system, size, *, dt=1e-3, solver="tsit5", rtol=None, atol=None, dtype=jnp.float64,
                 save_sites=False, box_tol=BOX_TOL):
        """``size`` is ``L`` (an integer: the periodic box); see :meth:`build` for ``size=None``."""
        self.lattice = FullLattice(system, size, dtype)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if not _checks.is_concrete(dt):
            raise ValueError("dt must be a concrete number (it fixes the number of steps); vmap over the state")
        _checks.require_positive("dt", dt)
        adaptive = rtol is not None or atol is not None
        if adaptive and (rtol is None or atol is None):
            raise ValueError("give both rtol and atol for adaptive stepping, or neither for a fixed step dt")
        if adaptive and solver not in TABLEAUX:
            raise ValueError(
                f"adaptive stepping (rtol/atol) needs a Runge-Kutta solver {tuple(TABLEAUX)}, got {solver!r}"
            )
        self.dt = float(dt)  # concrete for the step arithmetic; the solve traces it (jaxion.dynamics)
        self.solver_name = solver
        self.rtol, self.atol = rtol, atol
        self.save_sites = bool(save_sites)
        self.box_tol = box_tol

    @classmethod
    def build(cls, system, t1, *, size=None, dt=1e-3, **options):
        """The description for runs of up to ``t1`` periods: ``size=None`` means the infinite lattice,
        simulated in the periodic box that no sound crosses and returns through within ``t1``
        (:func:`infinite_lattice_size`; ``ValueError`` when it would be too large)."""
        _checks.require_run_length(t1, dt)
        if size is None:
            size = infinite_lattice_size(system, float(t1))
        return cls(system, size, dt=dt, **options)

    @property
    def system(self):
        return self.lattice.system

    @property
    def size(self):
        """``L``, masses per lattice axis (static)."""
        return self.lattice.size

    @property
    def adaptive(self):
        return self.rtol is not None

    @property
    def time_dtype(self):
        """The state's dtype: diffrax promotes the state to the dtype of the times."""
        return self.lattice.dtype

    def initial_state(self, position, velocity, key=None):
        """Framework at rest, ion at ``position`` with ``velocity``: ``((halo, sigma), (rho', sigma'))``."""
        return self.lattice.initial_state(position, velocity)

    def ion(self, state):
        (_, sigma), (_, sigma_dot) = state
        return sigma, sigma_dot

    def energy(self, state):
        return self.lattice.energy(state)

    def observe(self, t, state, args=None):
        return self.lattice.observe(t, state, args, self.save_sites)

    def terms(self, key=None):
        return self.lattice.terms()

    def solver(self):
        return make_solver(self.solver_name)

    def _steps(self, t1):
        """Steps of at most ``dt`` in ``t1`` (a step a hair above ``dt`` by rounding counts as ``dt``)."""
        return max(1, int(math.ceil(float(t1) / self.dt * (1.0 - 1e-12))))

    def time_grid(self, t1, n_save):
        """Adaptive: ``t1`` and ``n_save`` evenly spaced times; fixed steps: ``t1`` rounded up to whole
        steps and the save times rounded onto the step grid."""
        if self.adaptive:
            return float(t1), jnp.linspace(0.0, float(t1), n_save, dtype=self.lattice.dtype)
        n_steps = self._steps(t1)
        return n_steps * self.dt, jnp.asarray(np.round(np.linspace(0.0, n_steps, n_save)) * self.dt, self.lattice.dtype)

    def step_control(self, t1):
        n_steps = self._steps(t1)
        if self.adaptive:
            return self.dt, diffrax.PIDController(rtol=self.rtol, atol=self.atol), max(16 * n_steps, 10_000)
        # A power of two: a bound only (no memory is reserved without reverse-mode AD), and runs
        # of similar length then share one compiled solve.
        return self.dt, diffrax.ConstantStepSize(), 1 << n_steps.bit_length()

    def check(self, position, velocity, duration):
        """``ValueError`` for a box too small for the interacting sites and, for fixed steps, for ``dt``
        beyond the solver's stability bound with the forces met (:func:`check_step`); warns when sound
        can return through the box within ``duration`` (:func:`_check_box`)."""
        _check_box(self.lattice, duration, position, velocity, None, self.box_tol)
        if not self.adaptive:
            _check_step(self.lattice, self.solver_name, self.dt, position, velocity, duration)

    @property
    def periodic_size(self):
        """``L``: the lattice is a periodic box (``single_pass`` estimates its returning sound)."""
        return self.size

    @property
    def sound_return_tol(self):
        return self.box_tol


# ``size=None`` builds at most this many masses (2^21: L = 128 for a cubic lattice, 96 MiB of
# state, positions and velocities, in float64; the Runge-Kutta stages take a few times more).
MAX_INFINITE_MASSES = 1 << 21


def infinite_lattice_size(system, duration):
    """``L`` of the periodic box that stands for the infinite lattice over a run of ``duration`` periods:
    no sound leaving a site reaches a periodic image of a site before the run ends, so the run equals
    the infinite lattice's (to rounding). With ``span`` the sites' extent in cells (largest over the
    axes), ``n = ceil(c duration / alpha)`` the cells sound crosses at the largest sound speed ``c``
    (:func:`~jaxion.response.max_sound_speed`) and ``reach`` the potential's ``_RANGE_MARGIN`` ranges in cells
    (the interacting region, :func:`require_box`),

        L = span + max(2 reach, n + 4 + 2 ceil(n^(1/3))).

    The margin is the tail that a dispersive lattice's response runs ahead of the sound front, of
    width growing as ``n^(1/3)`` (an Airy front): on the cubic lattice (``n = 10``, the ion still at
    the site when the front returns) the ion's trajectory moved by 1.7e-9 in ``L = span + n + 1``,
    1e-13 with four cells more and not at all with eight. ``ValueError`` when the system is traced or
    ``L^dim`` exceeds ``MAX_INFINITE_MASSES``, suggesting the kernel method (the infinite lattice at a
    cost independent of ``L``) or an explicit ``size``."""
    if not _checks.is_concrete(system):
        raise ValueError("size=None (the infinite lattice) sizes the full lattice's box from the system's "
                         "parameters, which are traced here: pass an explicit size")
    lattice = system.lattice
    spacing = float(lattice.spacing)
    reach = int(math.ceil(_RANGE_MARGIN * float(system.potential.range) / spacing))
    span = int(np.max(np.ptp(system.site_cells, axis=0))) + 1
    speed = max_sound_speed(lattice)
    travel = int(math.ceil(speed * float(duration) / spacing))
    size = span + max(2 * reach, travel + 4 + 2 * int(math.ceil(travel ** (1.0 / 3.0))))
    masses = size**lattice.dim
    if masses > MAX_INFINITE_MASSES:
        state = 2 * 3 * masses * 8
        raise ValueError(
            f"size=None means the infinite lattice: over the run's {float(duration):.4g} periods sound (speed "
            f"{speed:.4g} l per period) travels {travel} cells, so the full lattice needs a periodic box of L = {size} "
            f"({masses:.3g} masses, {state / 2**30:.3g} GiB of state in float64), beyond the {MAX_INFINITE_MASSES:,} "
            f"masses that size=None builds (L = {round(MAX_INFINITE_MASSES ** (1 / lattice.dim))} for this "
            f"{lattice.dim}-dimensional lattice). Use method='kernel' (the infinite lattice at a cost independent of "
            "L), a shorter run, or an explicit size=L (a finite periodic box: FiniteBoxWarning says when its "
            "returning sound matters)"
        )
    return size


def make_solver(name):
    """The diffrax solver ``name`` (one of ``SOLVERS``) for :meth:`FullLattice.terms`."""
    if name in _SYMPLECTIC:
        return _SYMPLECTIC[name]()
    tableau_solver, order = TABLEAUX[name]
    return RungeKuttaNystrom(tableau_solver.tableau, order)


def _stability_limit(solver):
    if solver in _SYMPLECTIC:
        return _SYMPLECTIC[solver]().stability_limit()
    return runge_kutta_stability_limit(solver)


def require_box(system, size):
    """ValueError when the interacting region (the sites and ``_RANGE_MARGIN`` ranges of the potential
    around them) does not fit in the periodic box of ``size`` cells. Skipped for traced parameters;
    cheap, so drivers call it for every case before any work starts."""
    lattice = system.lattice
    if not _checks.is_concrete(system):
        return
    reach = int(math.ceil(_RANGE_MARGIN * float(system.potential.range) / float(lattice.spacing)))
    span = int(np.max(np.ptp(system.site_cells, axis=0))) + 1
    needed = span + 2 * reach
    if size < needed:
        raise ValueError(
            f"size={size} is too small: the interacting sites span {span} cells and the potential "
            f"reaches {_RANGE_MARGIN:g} ranges = {reach} cells on each side, so the box needs size >= {needed}"
        )


def _check_box(model, t1, position, velocity, stop_z, box_tol=BOX_TOL):
    """ValueError when the interacting region does not fit in the box (:func:`require_box`); warning
    when sound can cross the box and come back to the sites within the run (a bound only: the effect
    on an arbitrary trajectory is not estimated; :func:`jaxion.finite_box.check_sound_return` estimates it for a
    single pass, which silences this one). ``box_tol=None`` silences it. Skipped for traced parameters."""
    if not _checks.is_concrete(model.system):
        return
    require_box(model.system, model.size)
    duration = run_duration(position, velocity, t1, stop_z)
    speed = max_sound_speed(model.system.lattice)
    travel, box = duration * speed, model.size * float(model.system.lattice.spacing)
    if box_tol is not None and travel > box:
        _checks.warn(
            f"sound can cross the periodic box of {model.size} cells and return to the sites within the run "
            f"({duration:.3g} periods x sound speed {speed:.3g} = {travel:.3g} > box {box:.3g}); how "
            "much it changes this trajectory is not estimated (single_pass estimates it for a pass), compare with "
            f"a larger box; {holding_size(model.system.lattice, duration)}; box_tol=None silences this check",
            FiniteBoxWarning)


def _check_step(model, solver, dt, position=None, velocity=None, duration=0.0):
    """ValueError when ``dt`` exceeds the solver's stability bound for the lattice's highest frequency
    and, given a concrete start, for the lattice with the ion-site forces met along the straight path
    (:func:`jaxion.run_checks.require_step`). Skipped for traced parameters."""
    if not _checks.is_concrete(model.system):
        return
    bound = _stability_limit(solver)
    omega = model.highest_frequency()
    if 2.0 * math.pi * omega * dt >= bound:
        raise ValueError(
            f"dt={dt:g} is too large for solver={solver!r}: the lattice's highest frequency is "
            f"omega_max={omega:.4g}, and the method is stable only for 2 pi omega_max dt < {bound:.3g}, "
            f"i.e. dt < {bound / (2.0 * math.pi * omega):.3g}"
        )
    if position is not None:
        require_step(model.system, position, velocity, duration, dt, bound, f"solver={solver!r}", omega)


def check_step(system, position, velocity, t1, *, stop_z=None, size=None, dt=1e-3, solver="tsit5", rtol=None,
               atol=None, dtype=jnp.float64, **_):
    """The step checks of :func:`simulate` for a (concrete) start, without running."""
    if rtol is None and atol is None and solver in SOLVERS:
        _checks.require_positive("dt", dt)
        lattice = FullDynamics.build(system, t1, size=size, dt=dt, solver=solver, dtype=dtype).lattice
        _check_step(lattice, solver, float(dt), position, velocity, run_duration(position, velocity, t1, stop_z))


def simulate(
    system,
    position,
    velocity,
    t1,
    *,
    stop_z=None,
    size=None,
    dt=1e-3,
    solver="tsit5",
    n_save=200,
    rtol=None,
    atol=None,
    progress=False,
    save_sites=False,
    dtype=jnp.float64,
    box_tol=BOX_TOL,
):
    """Integrate the ion and the whole periodic lattice (framework initially at rest):
    :meth:`FullDynamics.build`, then :func:`jaxion.dynamics.run_from` with ``CrossedPlane(stop_z)``.

    Args:
        system: the :class:`~jaxion.System`.
        position, velocity: ``(3,)`` initial ion state (vmappable).
        t1: duration in periods (concrete).
        stop_z: end the run when ``sigma_z >= stop_z`` (checked after each step).
        size: ``L`` masses per lattice axis of the periodic box (``L`` for a chain, ``L^3`` for a
            cubic lattice), or ``None`` (default) for the infinite lattice: the box that no sound
            crosses and returns through within ``t1`` (:func:`infinite_lattice_size`; ``ValueError``
            beyond ``MAX_INFINITE_MASSES``).
        dt: time step (periods); fixed unless ``rtol``/``atol`` are given (then the first step).
        solver: one of ``SOLVERS``: "tsit5", "dopri5", "dopri8", "verlet", "symplectic"
            (Blanes-Moan order 4; recommended for large lattices at dt ~ 0.01-0.02 for the
            paper's cubic lattice).
        n_save: number of evenly spaced save times in ``[0, t1]`` (rounded onto the step grid for
            fixed steps), plus the final state.
        rtol, atol: adaptive step control (PID) for the Runge-Kutta solvers; both or neither.
        progress: show diffrax's tqdm progress meter.
        save_sites: also save the interacting sites' displacements ``(T, S, 3)``.
        dtype: precision of the state and times, ``jnp.float64`` or ``jnp.float32`` (module docstring).
        box_tol: ``None`` silences the returning-sound warning; ``single_pass`` uses it as the
            tolerance of its estimate (:func:`jaxion.finite_box.check_sound_return`).

    Returns:
        :class:`~jaxion.trajectory.Trajectory` with ``T = n_save`` saved times; ``ts`` is ``inf``
        past an early stop. ``energy`` is the conserved total, so its spread is the drift.

    Raises:
        ValueError: bad arguments; ``dt`` beyond the solver's stability bound for the lattice's
            highest frequency, with the ion-site curvature met along the straight path
            (:func:`check_step`); a box too small for the interacting sites. Warns when sound has
            time to cross the box and return (:func:`_check_box`).
    """
    dynamics = FullDynamics.build(system, t1, size=size, dt=dt, solver=solver, rtol=rtol, atol=atol, dtype=dtype,
                                  save_sites=save_sites, box_tol=box_tol)
    position = jnp.asarray(position, jnp.float64)
    velocity = jnp.asarray(velocity, jnp.float64)
    _checks.require_integer("n_save", n_save, low=1)
    stop = None if stop_z is None else CrossedPlane(stop_z)
    return run_from(dynamics, position, velocity, t1, saveat=n_save, stop=stop, progress=progress)
