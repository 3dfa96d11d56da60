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
  ``G`` the periodic embedding (:meth:`FullLattice.wrap`). The drift is ``dq/dtau = G rho'``,
  which is linear, so the halo stays an exact copy of the opposite faces and the force never
  rebuilds it (one pass over memory less per force evaluation: 1.5x faster per symplectic stage
  at L = 100);
* ``sigma``: ``(3,)`` ion position.

``rho`` as one ``(3, L, ...)`` array (``FullLattice.shape``) is what :meth:`FullLattice.spring_force`
takes and returns; :meth:`FullLattice.wrap` accepts either form.

Equations of motion (dots are d/dtau, tau in periods):

    rho''   = -4 pi^2 [W rho + grad_rho Phi(rho_S, sigma) / m]                     (Eq. 4)
    sigma'' = -(4 pi^2 / mu) grad_sigma Phi(rho_S, sigma)   (zero on pinned axes)  (Eq. 3)
    m (W rho)_n = kappa rho_n + sum_{b, +-} Phi_b (rho_n - rho_{n+b})

The harmonic force is a stencil over bond pairs ``+-b``: ``lap_b = 2 rho - rho_{n+b} - rho_{n-b}``
(neighbours as static slices of a periodically wrapped copy), contracted with
``Phi_b = k_long u u^T + k_trans (1 - u u^T)`` using the bond's static direction ``u`` (zero
entries of ``u`` cost nothing). The interaction acts on the listed sites only, at their actual
displaced positions; site cells map into the box modulo ``L``. Conserved:

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

import functools
import math
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .brillouin import periodic_grid, sphere_rule
from .simulation import FiniteBoxWarning, Trajectory, require_step, run_duration
from .solvers import BlanesMoan, RungeKuttaNystrom, VelocityVerlet
from .system import System

FOUR_PI2 = 4.0 * math.pi**2

# diffrax's tableaux and their orders, run in Nystroem form (jaxion.solvers.RungeKuttaNystrom)
_TABLEAUX = {"tsit5": (diffrax.Tsit5, 5), "dopri5": (diffrax.Dopri5, 5), "dopri8": (diffrax.Dopri8, 8)}
_SYMPLECTIC = {"verlet": VelocityVerlet, "symplectic": BlanesMoan}
SOLVERS = tuple(_TABLEAUX) + tuple(_SYMPLECTIC)

# |R(iy)| of an explicit Runge-Kutta method exceeds 1 (the mode grows) beyond this growth per step;
# below it the method is stable to rounding on the imaginary axis.
_RK_GROWTH = 1e-10
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
        if self.size < self.width:
            raise ValueError(f"size={size} is smaller than the bonds' reach of {self.width} cells: the box must be larger")
        cells = np.mod(system.site_cells, self.size)
        if len({tuple(c) for c in cells}) != len(cells):
            raise ValueError(
                f"sites {system.sites} fall on the same mass modulo size={size}: the box must be larger"
            )
        self.site_index = tuple(tuple(int(c) for c in column) for column in cells.T)
        k_trans = system.lattice.k_trans
        self.transverse = not (_checks.is_concrete(k_trans) and np.all(np.asarray(k_trans) == 0))

    @property
    def shape(self):
        """``(3, L, ...)``: shape of ``rho``."""
        return (3,) + (self.size,) * self.system.lattice.dim

    @property
    def width(self):
        """``w``: the halo width, the largest bond offset along any axis (cells)."""
        return max(abs(c) for offset in self.system.lattice.offsets for c in offset)

    def wrap(self, rho):
        """``G rho``: three components ``(L, ...)`` (a tuple, or one ``(3, L, ...)`` array) -> a
        tuple of three ``(L + 2w, ...)`` with periodic halos, each in one pass that fuses into its
        consumer (``jnp.pad(mode="wrap")`` makes one pass per axis). Its reverse-mode derivative
        ``G^T`` folds the halos back onto the faces they copy (slices, not a scatter)."""
        return tuple(_wrap(component, self.width) for component in rho)

    def interior(self, halo):
        """``rho`` from its wrapped form: three ``(L + 2w, ...)`` -> three ``(L, ...)``."""
        return tuple(component[(slice(self.width, self.width + self.size),) * component.ndim] for component in halo)

    def _sites(self, halo):
        """Displacements of the interacting sites, ``(S, 3)``, from the wrapped displacements."""
        cells = tuple(tuple(i + self.width for i in axis) for axis in self.site_index)
        return jnp.stack([component[cells] for component in halo], axis=-1)

    def spring_force(self, rho, scale=1.0):
        """``-scale * m W rho`` (the harmonic force, minus the gradient of ``rho^T V rho / 2``).

        Computed by the stencil :meth:`_stencil` on ``G rho`` (:meth:`wrap`); its reverse-mode
        derivative is the same stencil applied to the cotangent (the exact transpose, not autodiff's
        transposed slices, which on CPU cost ~100x the stencil itself).

        Args:
            rho: ``(3, L, ...)`` displacements (component-major).
            scale: factor folded into the spring constants (``4 pi^2 / m`` gives ``rho''``).

        Returns:
            ``(3, L, ...)``, same dtype as ``rho``.
        """
        return jnp.stack(_springs((self, scale, self.wrap(rho))))

    def _stencil(self, halo, scale, full_range=False):
        """The stencil of :meth:`spring_force` on wrapped displacements ``halo`` (three components
        ``(P, ...)``, ``P = L + 2w``), returning the force on the box (three ``(L, ...)``).

        Flattened, every neighbour ``rho_{n+-b}`` of a box cell is the contiguous 1-D shift by
        ``s_b = sum_d b_d P^(dim-1-d)``, so the whole stencil is one fusion of unit-stride loops
        (on CPU 2.4x faster than static 3-D slices of the halo and ~8x faster than ``jnp.roll``);
        the ends of the flat range touch only halo cells, which are cropped away.

        ``full_range=True`` evaluates the same formula at every cell of the ``P^dim`` array (zeros
        beyond it) and returns three ``(P, ...)``: applied to a cotangent embedded with a zero halo,
        that is the exact transpose ``S^T`` of the stencil ``S`` (the bond sum is symmetric in
        ``+-b``, and the diagonal terms vanish on the zero halo).
        """
        lattice = self.system.lattice
        dim = lattice.dim
        dtype = halo[0].dtype
        cast = lambda x: (scale * x).astype(dtype)
        k_long, k_trans, kappa = cast(lattice.k_long), cast(lattice.k_trans), cast(lattice.confinement)
        side = self.size + 2 * self.width
        shifts = [sum(c * side ** (dim - 1 - d) for d, c in enumerate(offset)) for offset in lattice.offsets]
        reach = max(abs(shift) for shift in shifts)
        flat = [component.reshape(-1) for component in halo]
        if full_range:
            flat = [jnp.pad(component, (reach, reach)) for component in flat]
        length = flat[0].shape[0] - 2 * reach

        def neighbour(i, shift):
            """Component ``i`` of ``rho_{n + shift}`` over the flat range ``[reach, n - reach)``."""
            return flat[i][reach + shift : reach + shift + length]

        force = [-kappa[i] * neighbour(i, 0) for i in range(3)]
        for index, (shift, direction) in enumerate(zip(shifts, lattice.directions)):
            needed = range(3) if self.transverse else [i for i, u in enumerate(direction) if u != 0.0]
            # lap_b = 2 rho_n - rho_{n+b} - rho_{n-b}; the force is -Phi_b lap_b.
            lap = {i: 2.0 * neighbour(i, 0) - neighbour(i, shift) - neighbour(i, -shift) for i in needed}
            along = sum(u * lap[i] for i, u in enumerate(direction) if u != 0.0)
            for i, u in enumerate(direction):
                if u != 0.0:
                    force[i] = force[i] - k_long[index] * (u * along)
                if self.transverse:
                    force[i] = force[i] - k_trans[index] * (lap[i] - u * along if u != 0.0 else lap[i])
        shape = halo[0].shape
        if full_range:
            return tuple(component.reshape(shape) for component in force)
        return self.interior([jnp.pad(component, (reach, reach)).reshape(shape) for component in force])

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
        rho_ddot = _springs((self, FOUR_PI2 / self.system.lattice.mass, q[0]))
        return self._add_at_sites(rho_ddot, on_sites), on_ion

    def _add_at_sites(self, rho, on_sites):
        """``rho`` (three ``(L, ...)``) plus ``on_sites`` ``(3, S)`` at the sites, in place."""
        return tuple(component.at[self.site_index].add(value) for component, value in zip(rho, on_sites))

    def kicked(self, q, p, scale):
        """``p + scale * acceleration(q)``, ordered so the spring force and the update are one
        pass (``p + scale S(q)``) and the sites' few terms are added in place afterwards: no
        acceleration array is written (the symplectic solvers' kick, ``jaxion.solvers``). The
        scale (a time step fraction) multiplies the stencil's result rather than entering its
        spring constants, which would recompute the scaled constants per lattice site (~20%
        slower at L = 100)."""
        (halo, _), (rho_dot, sigma_dot) = q, p
        on_sites, on_ion = self._interaction_accelerations(q)
        step = jnp.asarray(scale, self.dtype)
        springs = _springs((self, FOUR_PI2 / self.system.lattice.mass, halo))
        rho_dot = tuple(component + step * force for component, force in zip(rho_dot, springs))
        return self._add_at_sites(rho_dot, step * on_sites), (sigma_dot + step * on_ion).astype(sigma_dot.dtype)

    def energy(self, y):
        """Total energy ``E`` (module docstring) of the state ``y = ((halo, sigma), (rho', sigma'))``, float64."""
        (halo, sigma), (rho_dot, sigma_dot) = y
        mass = self.system.lattice.mass
        wide = lambda x: x.astype(jnp.float64)
        total = lambda fields: sum(jnp.sum(wide(field)) for field in fields)
        kinetic = mass * total(v**2 for v in rho_dot) / (2.0 * FOUR_PI2)
        harmonic = -0.5 * total(r * f for r, f in zip(self.interior(halo), _springs((self, 1.0, halo))))
        ion = self.system.total_energy(wide(self._sites(halo)), sigma, sigma_dot)
        return ion + kinetic + harmonic

    def initial_state(self, position, velocity):
        """Framework at rest, ion at ``position`` with ``velocity``: ``((halo, sigma), (rho', sigma'))``."""
        rest = (jnp.zeros(self.shape[1:], self.dtype),) * 3
        return (self.wrap(rest), jnp.asarray(position, self.dtype)), (rest, jnp.asarray(velocity, self.dtype))

    def observe(self, t, y, args, save_sites=False):
        """What a :class:`~jaxion.simulation.Trajectory` keeps of a state: ion position,
        velocity, total energy and (optionally) the site displacements ``(S, 3)``."""
        (halo, sigma), (_, sigma_dot) = y
        out = dict(position=sigma, velocity=sigma_dot, energy=self.energy(y))
        if save_sites:
            out["sites"] = self._sites(halo).astype(jnp.float64)
        return out

    def terms(self):
        """diffrax terms ``(drift, kick)``, the partitioned form every solver here takes. The
        vector fields are modules (not closures) so repeated calls reuse the compiled solve."""
        return _Rate(_Drift(self)), _KickRate(_Kick(self))

    def highest_frequency(self):
        """Estimate of the highest lattice frequency ``omega_max`` (units of ``Omega``): the
        maximum over the periodic grid of ``min(L, 16)`` points per axis (zone boundary included
        for even grids). The ion-site curvature is not included."""
        grid = periodic_grid(min(self.size, 16), self.system.lattice.dim)
        return float(jnp.max(self.system.lattice.frequencies(grid)))

    def sound_speed(self):
        """Largest long-wave sound speed over directions (``l`` per period)."""
        lattice = self.system.lattice
        directions = sphere_rule(12, 24)[0] if lattice.dim == 3 else jnp.ones((1, 1))
        return float(jnp.max(lattice.sound_speeds(directions)))


class _Rate(diffrax.AbstractTerm):
    """A term ``dz/dtau = f(tau, y)`` whose output need not have the shape of its input ``y``
    (diffrax's ``ODETerm`` broadcasts to it): the drift maps velocities ``(3, L, ...)`` to
    wrapped positions ``(3, L + 2w, ...)``, the kick the reverse."""

    rate: eqx.Module

    def vf(self, t, y, args):
        return self.rate(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jax.tree.map(lambda v: (control * v).astype(v.dtype), vf)


class _KickRate(_Rate):
    """The kick term, with the fused update ``p + scale a(q)`` the symplectic solvers use."""

    def kicked(self, t, q, p, args, scale):
        return self.rate.model.kicked(q, p, scale)


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


class _Observe(eqx.Module):
    """Save function: :meth:`FullLattice.observe`."""

    model: FullLattice
    save_sites: bool = eqx.field(static=True)

    def __call__(self, t, y, args):
        return self.model.observe(t, y, args, self.save_sites)


class _Passed(eqx.Module):
    """Event condition: the ion has reached the plane ``z = stop_z``."""

    stop_z: jax.Array

    def __call__(self, t, y, args, **kwargs):
        return y[0][1][2] >= self.stop_z


@functools.cache
def runge_kutta_stability_limit(name):
    """Largest ``y`` with ``|R(iy')| <= 1 + 1e-10`` for all ``0 < y' <= y``, where ``R`` is the
    stability polynomial of the explicit Runge-Kutta method ``name`` (from its Butcher tableau):
    Tsit5 0.48, Dopri5 1.0, Dopri8 0.58. Beyond it a lattice mode with ``2 pi omega dt > y``
    is amplified every step."""
    tableau = _TABLEAUX[name][0].tableau
    stages = len(tableau.a_lower) + 1
    a = np.zeros((stages, stages))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    y = np.linspace(0.01, 6.0, 6000)
    eye, ones = np.eye(stages), np.ones(stages)
    amplification = np.abs([1 + 1j * v * tableau.b_sol @ np.linalg.solve(eye - 1j * v * a, ones) for v in y])
    unstable = amplification > 1.0 + _RK_GROWTH
    return float(y[np.argmax(unstable) - 1]) if np.any(unstable) else float(y[-1])


def make_solver(name):
    """The diffrax solver ``name`` (one of ``SOLVERS``) for :meth:`FullLattice.terms`."""
    if name in _SYMPLECTIC:
        return _SYMPLECTIC[name]()
    tableau_solver, order = _TABLEAUX[name]
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


def _check_box(model, t1, position, velocity, stop_z):
    """ValueError when the interacting region does not fit in the box (:func:`require_box`); warning
    when sound can cross the box and come back to the sites within the run. Skipped for traced parameters."""
    if not _checks.is_concrete(model.system):
        return
    require_box(model.system, model.size)
    check_sound_return(model.system, run_duration(position, velocity, t1, stop_z), model.size)


def check_sound_return(system, duration, size=32, **options):
    """Warn (:class:`~jaxion.simulation.FiniteBoxWarning`) when sound crossing the periodic box of
    ``size`` cells returns to the sites within ``duration`` periods, naming a size that would be
    enough; ``single_pass`` calls it once with the runs' actual durations."""
    if not _checks.is_concrete(system):
        return
    model = FullLattice(system, size)
    spacing = float(system.lattice.spacing)
    travel = duration * model.sound_speed()
    if travel > model.size * spacing:
        warnings.warn(
            f"sound crosses the periodic box and returns to the sites within the run ({duration:.3g} periods "
            f"x speed {model.sound_speed():.3g} = {travel:.3g} > box of {model.size} cells = {model.size * spacing:.3g}); "
            f"results differ from an infinite lattice. size >= {int(math.ceil(travel / spacing)) + 1} would be enough.",
            FiniteBoxWarning,
            stacklevel=3,
        )


def _check_step(model, solver, dt, position=None, velocity=None, duration=0.0):
    """ValueError when ``dt`` exceeds the solver's stability bound for the lattice's highest frequency
    and, given a concrete start, for the lattice with the ion-site forces met along the straight path
    (:func:`jaxion.simulation.require_step`). Skipped for traced parameters."""
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


def check_step(system, position, velocity, t1, *, stop_z=None, size=32, dt=1e-3, solver="tsit5", rtol=None, atol=None,
               dtype=jnp.float64, **_):
    """The step checks of :func:`simulate` for a (concrete) start, without running: ``single_pass``
    calls it once with its fastest speed before vectorising over the speeds."""
    if rtol is None and atol is None and solver in SOLVERS:
        _checks.require_positive("dt", dt)
        _check_step(FullLattice(system, size, dtype), solver, float(dt), position, velocity,
                    run_duration(position, velocity, t1, stop_z))


def simulate(
    system,
    position,
    velocity,
    t1,
    *,
    stop_z=None,
    size=32,
    dt=1e-3,
    solver="tsit5",
    n_save=200,
    rtol=None,
    atol=None,
    progress=False,
    save_sites=False,
    dtype=jnp.float64,
):
    """Integrate the ion and the whole periodic lattice (framework initially at rest).

    Args:
        system: the :class:`~jaxion.System`.
        position, velocity: ``(3,)`` initial ion state (vmappable).
        t1: duration in periods (concrete).
        stop_z: end the run when ``sigma_z >= stop_z`` (checked after each step).
        size: ``L`` masses per lattice axis (``L`` for a chain, ``L^3`` for a cubic lattice).
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

    Returns:
        :class:`~jaxion.simulation.Trajectory` with ``T = n_save`` saved times; ``ts`` is ``inf``
        past an early stop. ``energy`` is the conserved total, so its spread is the drift.

    Raises:
        ValueError: bad arguments; ``dt`` beyond the solver's stability bound for the lattice's
            highest frequency, with the ion-site curvature met along the straight path
            (:func:`check_step`); a box too small for the interacting sites. Warns when sound has
            time to cross the box and return.
    """
    model = FullLattice(system, size, dtype)
    position = jnp.asarray(position, jnp.float64)
    velocity = jnp.asarray(velocity, jnp.float64)
    _checks.require_shape("position", position, (3,))
    _checks.require_shape("velocity", velocity, (3,))
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    _checks.require_run_length(t1, dt)
    _checks.require_integer("n_save", n_save, low=1)
    adaptive = rtol is not None or atol is not None
    if adaptive and (rtol is None or atol is None):
        raise ValueError("give both rtol and atol for adaptive stepping, or neither for a fixed step dt")
    if adaptive and solver not in _TABLEAUX:
        raise ValueError(f"adaptive stepping (rtol/atol) needs a Runge-Kutta solver {tuple(_TABLEAUX)}, got {solver!r}")
    t1, dt = float(t1), float(dt)
    _check_box(model, t1, position, velocity, stop_z)
    if not adaptive:
        _check_step(model, solver, dt, position, velocity, run_duration(position, velocity, t1, stop_z))

    n_steps = max(1, int(math.ceil(t1 / dt * (1.0 - 1e-12))))
    if adaptive:
        controller, max_steps = diffrax.PIDController(rtol=rtol, atol=atol), max(16 * n_steps, 10_000)
        save_times = jnp.linspace(0.0, t1, n_save, dtype=model.dtype)
    else:
        t1 = n_steps * dt
        # A power of two: a bound only (no memory is reserved without reverse-mode AD), and runs
        # of similar length then share one compiled solve.
        controller, max_steps = diffrax.ConstantStepSize(), 1 << n_steps.bit_length()
        save_times = jnp.asarray(np.round(np.linspace(0.0, n_steps, n_save)) * dt, model.dtype)

    observe = _Observe(model, save_sites)
    save = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=save_times, fn=observe), diffrax.SubSaveAt(t1=True, fn=observe)])
    event = None
    if stop_z is not None:
        event = diffrax.Event(_Passed(jnp.asarray(stop_z, jnp.float64)))
    method = make_solver(solver)
    solution = diffrax.diffeqsolve(
        model.terms(),
        method,
        # diffrax promotes the state to the dtype of the times: float32 storage needs float32 times
        jnp.asarray(0.0, model.dtype),
        jnp.asarray(t1, model.dtype),
        jnp.asarray(dt, model.dtype),
        model.initial_state(position, velocity),
        saveat=save,
        stepsize_controller=controller,
        event=event,
        max_steps=max_steps,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    saved, final = solution.ys
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
    )


@eqx.filter_custom_vjp
def _springs(inputs):
    """``model._stencil(halo, scale)`` for ``inputs = (model, scale, halo)``, with the VJP below."""
    model, scale, halo = inputs
    return model._stencil(halo, scale)


@_springs.def_fwd
def _springs_fwd(perturbed, inputs):
    model, scale, halo = inputs
    return model._stencil(halo, scale), None


@_springs.def_bwd
def _springs_bwd(residuals, cotangent, perturbed, inputs):
    """``halo``: the exact transpose ``S^T g``, the stencil over the whole wrapped array of ``g``
    embedded with a zero halo (:meth:`FullLattice._stencil`, ``full_range``); through ``G^T``
    this is ``W g`` (``W`` symmetric). Springs and ``scale``: the force is linear in them at fixed
    ``halo``; autodiff of that map only reduces products of ``g`` with shifts of ``halo``."""
    model, scale, halo = inputs
    _, parameter_vjp = eqx.filter_vjp(lambda m, s: m._stencil(halo, s), model, scale)
    model_bar, scale_bar = parameter_vjp(cotangent)
    halo_bar = (None,) * len(halo)
    if any(perturbed[2]):
        embedded = tuple(jnp.pad(component, model.width) for component in cotangent)
        halo_bar = tuple(bar if wanted else None
                         for bar, wanted in zip(model._stencil(embedded, scale, full_range=True), perturbed[2]))
    return model_bar, scale_bar, halo_bar


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _wrap(rho, width):
    """``G rho``: one component ``(L, ...)`` -> ``(L + 2 width, ...)``, periodic halos in one fused pass:
    whole rows along the last (contiguous) axis are gathered for the wrapped outer axes, and the
    last axis is wrapped by concatenation. Row gathers keep the inner loop contiguous and
    vectorised, 1.8x faster inside a symplectic drift at L = 100 than gathering single elements
    through a full index array."""
    size = rho.shape[0]
    wrapped = np.arange(-width, size + width) % size
    if rho.ndim > 1:
        rho = rho[np.ix_(*[wrapped] * (rho.ndim - 1))]
    return jnp.concatenate([rho[..., size - width :], rho, rho[..., :width]], axis=-1)


def _wrap_fwd(rho, width):
    return _wrap(rho, width), None


def _wrap_bwd(width, residuals, cotangent):
    """``G^T g``: each halo slab is added onto the face it copies, axis by axis (edges and
    corners fold twice or three times, as they were copied)."""
    folded = cotangent
    for axis in range(cotangent.ndim):
        size = folded.shape[axis] - 2 * width
        take = lambda start, stop: jax.lax.slice_in_dim(folded, start, stop, axis=axis)
        core = take(width, width + size)
        low_halo, high_halo = take(0, width), take(width + size, size + 2 * width)  # copies of the last / first w
        index = lambda start, stop: (slice(None),) * axis + (slice(start, stop),)
        core = core.at[index(size - width, size)].add(low_halo)
        folded = core.at[index(0, width)].add(high_halo)
    return (folded,)


_wrap.defvjp(_wrap_fwd, _wrap_bwd)
