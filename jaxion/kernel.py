"""The harmonic lattice integrated out exactly: the ion and its sites with a memory kernel (``method="kernel"``).

With the framework harmonic and initially at rest, and the ion touching only the sites ``S``,
Eq. 4 (``rho'' = -4 pi^2 W rho + 4 pi^2 F / m`` with ``F = -grad_rho Phi``) is solved by the
retarded Green's function (:mod:`jaxion.memory`), and the interacting sites obey exactly

    rho_S(tau)  = integral_0^tau K(tau - s) F_S(s) ds,      F_S = -grad_rho_S Phi(rho_S, sigma)
    rho_S'(tau) = integral_0^tau K'(tau - s) F_S(s) ds       (K(0) = 0, K'(0) = (4 pi^2 / m) delta_ab I)

The ion obeys Eq. 3, ``sigma'' = (4 pi^2 / mu) f``, ``f = -grad_sigma Phi(rho_S, sigma)``, fully
non-linear in ``rho_S``. Nothing is linearised: the result equals the full simulation of the same
lattice up to discretisation error, at a cost independent of ``L``. The kernel ``K``, ``K'`` is a
:class:`~jaxion.memory.MemoryKernel` (built by :func:`~jaxion.memory.memory_kernel`, for a periodic
``L^dim`` lattice or the infinite one); this module is the description that integrates with it,
:class:`KernelDynamics`, and its protocol :func:`simulate`.

Convolution quadrature. Every memory integral ``integral_0^{t_n} g(s) ds`` (for the sites
``g = K(t_n - s) F(s)``, for the ion ``g = (t_n - s) f(s)``, for the velocities ``K'`` and ``1``)
uses the same weights ``w_{n,m}`` (:func:`quadrature_tables`): trapezoid with Gregory end corrections
of order ``order`` (default 8, error ``O(dt^8)`` for smooth ``g``; steps ``order - 1 .. 2 order - 4`` use
the rule closest to unit weights exact to the same degree). The first ``order - 1`` steps integrate
the interpolant through all of them (implicit, :func:`startup_weights`; solved by 8 fixed-point passes
on the forces, each gaining a factor ~ ``(2 pi omega_max dt)^2``): a low-order start would limit the
global error to ``O(dt^4)``. Because ``K(0) = 0`` and ``(t_n - s) = 0`` at ``s = t_n``, positions at
step ``n`` need the forces only up to ``n - 1``: the scheme is explicit, then the forces at ``n`` give
the velocities (``K'(0) != 0``) and the energy.

History sum. The Toeplitz part ``sum_{m<n} K_{n-m} F_m`` (plus end corrections) is computed by the
doubling block scheme of Hairer, Lubich and Schlichte: within a block of ``block`` steps directly, and
each time a block completes, the last ``s = block 2^j`` forces (``2^j`` the largest power of two
dividing the block count) are convolved by FFT with ``K[0:2s]`` into the next ``s`` outputs, so the
total cost is ``O(n log^2 n)`` instead of ``O(n^2)`` (``block=None`` is the direct sum). It is written
as a recursion over segments of ``block 2^l`` steps (blocks padded to a power of two; the padding is
skipped), each a ``lax.scan`` over its two halves that convolves the first half's forces into the
second, so every array a block touches is the size of its segment (no ``O(n)`` state per block). A
sum-of-exponentials history was measured against it and is slower for these kernels
(``docs/benchmarks.md``, "Kernel method").

The energy ``E = mu |sigma'|^2 / 8 pi^2 + Phi(rho_S, sigma) + W``, with ``W = integral F_S . rho_S'``
the work done on the framework (its energy), is conserved to the quadrature's accuracy.

Why a hand-written loop and not diffrax: the right-hand side at each step depends on the whole
force history (a memory integral with a tabulated kernel), which diffrax's ODE state and step
control do not express; the loop is a ``lax.scan`` (reverse-differentiable, vmappable, jit-able), and
:meth:`KernelDynamics.integrate` implements the interface's ``integrate`` with it. A stop object
(:class:`~jaxion.dynamics.AbstractStop`) is evaluated on the ion's state at every step point and
freezes the state at the first where it holds (as the diffrax descriptions' event does); later saves
have ``ts = inf`` and the frozen state, and whole blocks after the stop are skipped (``lax.cond``;
under ``vmap`` both branches run).
"""

import functools
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from . import _checks
from .dynamics import AbstractDynamics, CrossedPlane, run
# The framework's response lives in jaxion.memory; its public names stay importable from here.
from .memory import (  # noqa: F401
    FOUR_PI2,
    AbsorbingBoundary,
    KernelCache,
    MemoryKernel,
    absorbing_response,
    brillouin_rule,
    chebyshev_degree,
    chebyshev_nodes,
    highest_frequency,
    kernel_horizon,
    kernel_horizon_estimate,
    max_group_velocity,
    memory_kernel,
    mode_sum,
    spectral_bound,
    taylor_degree,
)
from .memory import _half_rule  # noqa: F401  (benchmarks/bench_kernel.py)
from .run_checks import STEPS_PER_RANGE, require_step, run_duration
from .system import System
from .trajectory import Trajectory


# ----------------------------------------------------------------------------- quadrature weights


def _gregory_corrections(n_corr):
    """End corrections ``c_j`` (``j < n_corr``) of Gregory's rule: ``integral_0^N g ~ sum_m g(m) +
    sum_j c_j (g(j) + g(N - j))`` exact for polynomials of degree ``< n_corr`` (Euler-Maclaurin)."""
    b = scipy.special.bernoulli(n_corr + 1)
    rhs = np.array([-0.5 if d == 0 else (b[d + 1] / (d + 1) if d % 2 else 0.0) for d in range(n_corr)])
    vandermonde = np.array([[float(j) ** d if (j or d) else 1.0 for j in range(n_corr)] for d in range(n_corr)])
    return np.linalg.solve(vandermonde, rhs)


def _startup_weights(n, degree):
    """Weights ``w (n+1,)`` for ``integral_0^n`` on the points ``0..n``: exact to ``degree`` and closest
    to the unit weights (Newton-Cotes when ``degree = n``)."""
    if n == 0:
        return np.zeros(1)
    powers = np.arange(degree + 1)
    a = (np.arange(n + 1) / n)[None, :] ** powers[:, None]  # (m / n)^p
    target = n / (powers + 1.0)  # integral_0^n (x / n)^p dx
    ones = np.ones(n + 1)
    return ones + a.T @ np.linalg.solve(a @ a.T, target - a @ ones)


def startup_weights(order):
    """``W[n, m] = integral_0^n l_m(x) dx`` for the Lagrange basis ``l_m`` on the nodes ``0..k-1``
    (``k = order - 1``), ``n < k``: the first ``k`` steps integrate the interpolant through all ``k``
    points (degree ``k - 1``, like the Gregory rule), which makes them implicit (solved by iteration)."""
    k = order - 1
    nodes = np.arange(k, dtype=float)
    weights = np.zeros((k, k))
    for m in range(k):
        basis = np.poly1d(np.poly(np.delete(nodes, m))) / np.prod(m - np.delete(nodes, m))
        primitive = np.polyint(basis)
        weights[:, m] = primitive(nodes) - primitive(0.0)
    return weights


def quadrature_tables(order):
    """Convolution-quadrature weights ``w_{n,m} = 1 + lower[r, m] + upper[r, n - m]``, ``r = min(n, R)``.

    ``lower`` covers ``m < k`` and ``upper`` covers ``n - m < k`` with ``m >= k`` (``k = order - 1``);
    rows ``r < R = 2k - 1`` are the startup rules, row ``R`` the Gregory rule for all ``n >= R``.
    ``diagonal[r] = w_{n,n}``.

    Returns:
        ``(lower (R+1, k), upper (R+1, k), diagonal (R+1,))`` NumPy arrays.
    """
    k = order - 1
    rows = 2 * k - 1
    lower, upper, diagonal = np.zeros((rows + 1, k)), np.zeros((rows + 1, k)), np.zeros(rows + 1)
    for n in range(rows):
        delta = _startup_weights(n, min(n, k - 1)) - 1.0
        for m in range(n + 1):
            if m < k:
                lower[n, m] = delta[m]
            else:
                upper[n, n - m] = delta[m]
        diagonal[n] = 1.0 + delta[n]
    c = _gregory_corrections(k)
    lower[rows], upper[rows], diagonal[rows] = c, c, 1.0 + c[0]
    return lower, upper, diagonal


# ----------------------------------------------------------------------------- the description


class KernelState(eqx.Module):
    """The instantaneous state of the ion and its sites (the history lives in the integration).

    Attributes:
        position, velocity: ``(3,)`` the ion's ``sigma``, ``sigma'``.
        sites, site_velocity: ``(S, 3)`` the sites' ``rho_S``, ``rho_S'``.
        work: ``W = integral F_S . rho_S'``, the energy given to the framework.
    """

    position: jax.Array
    velocity: jax.Array
    sites: jax.Array
    site_velocity: jax.Array
    work: jax.Array


def _energy(system, sigma, sigma_dot, rho, work):
    """``E = mu |sigma'|^2 / 8 pi^2 + Phi(rho_S, sigma) + W`` (module docstring)."""
    return system.ion_kinetic_energy(sigma_dot) + system.interaction(rho, sigma) + work


def _require_kernel_step(system, position, velocity, duration, dt):
    """:func:`check_step` for a run of ``duration`` periods."""
    _checks.require_positive("dt", dt)
    if not _checks.is_concrete(system):
        return
    require_step(system, position, velocity, duration, float(dt), 1.0, "the kernel method",
                 highest_frequency(system.lattice), STEPS_PER_RANGE)


def _step_count(t1, dt):
    """Steps of at most ``dt`` in ``t1`` (a step a hair above ``dt`` by rounding counts as ``dt``)."""
    return max(1, int(math.ceil(float(t1) / float(dt) * (1.0 - 1e-12))))


class KernelDynamics(AbstractDynamics):
    """The ion and its interacting sites with the lattice integrated out into a memory kernel.

    Attributes:
        system: the :class:`~jaxion.System`.
        kernel: the :class:`~jaxion.memory.MemoryKernel` of the system's sites, tabulated at ``dt``
            for at least the run's steps + 1 times.
        dt: static time step (periods); runs are whole numbers of steps.
        order: static convolution-quadrature order (2..10; Gregory rule with ``order - 1`` end corrections).
        block: static steps per block of the fast history sum, or ``None`` for the direct ``O(n^2)`` sum.
        save_sites: static; also save the sites' displacements ``(T, S, 3)``.

    The state is a :class:`KernelState`; a run starts with the framework at rest (the kernel's
    history starts at ``t = 0``). Build with :meth:`build` (which tabulates the kernel) or directly
    with a precomputed kernel. ``default_cache`` (a class attribute) is the :class:`~jaxion.memory.KernelCache`
    that :meth:`build` and :func:`simulate` use unless given another (or ``cache=None``): repeated runs
    of one system, step and duration share one kernel.
    """

    system: System
    kernel: MemoryKernel
    dt: float = eqx.field(static=True)
    order: int = eqx.field(static=True, default=8)
    block: int | None = eqx.field(static=True, default=64)
    save_sites: bool = eqx.field(static=True, default=False)

    default_cache: ClassVar[KernelCache] = KernelCache()

    def __check_init__(self):
        if not isinstance(self.system, System):
            raise ValueError(f"system must be a jaxion System, got {type(self.system).__name__}")
        if not isinstance(self.kernel, MemoryKernel):
            raise ValueError(
                f"kernel must be a MemoryKernel (jaxion.memory.memory_kernel), got {type(self.kernel).__name__}"
            )
        _checks.require_positive("dt", self.dt)
        _checks.require_integer("order", self.order, low=2, high=10)
        if self.block is not None:
            _checks.require_integer("block (or None)", self.block, low=1)
        if abs(self.kernel.dt - self.dt) > 1e-12 * self.dt:
            raise ValueError(f"kernel was tabulated with dt={self.kernel.dt}; this description steps dt={self.dt}")
        if len(self.kernel.pairs) != len(self.system.sites):
            raise ValueError(f"kernel is for {len(self.kernel.pairs)} sites, the system has {len(self.system.sites)}")

    @classmethod
    def build(cls, system, t1, *, dt=1e-3, size=None, order=8, block=64, resolution=None, boundary="auto",
              save_sites=False, kernel=None, cache="default"):
        """The description for runs of up to ``t1`` periods: the step is ``dt`` rounded down so that
        ``t1`` is a whole number of steps, and the kernel is tabulated to ``t1`` (or ``kernel`` checked).

        Args:
            system: the :class:`~jaxion.System`.
            t1: longest run (periods, concrete).
            dt: largest time step (periods).
            size: ``L`` of the periodic lattice, or ``None`` for the infinite lattice.
            order, block, save_sites: as the attributes.
            resolution: ``(n_radial, n_face)`` of the infinite lattice's Brillouin-zone rule.
            boundary: how the infinite lattice's kernel is built (:func:`~jaxion.memory.memory_kernel`):
                ``"auto"``, ``"quadrature"``, ``"absorbing"`` or an :class:`~jaxion.memory.AbsorbingBoundary`.
            kernel: a precomputed :class:`~jaxion.memory.MemoryKernel` for this system's sites and step.
            cache: the :class:`~jaxion.memory.KernelCache` that keeps the kernel, ``"default"`` for
                ``KernelDynamics.default_cache``, or ``None`` (built afresh).
        """
        if isinstance(cache, str) and cache == "default":
            cache = cls.default_cache
        _checks.require_run_length(t1, dt)
        _checks.require_integer("order", order, low=2, high=10)
        if block is not None:
            _checks.require_integer("block (or None)", block, low=1)
        n_steps = _step_count(t1, dt)
        h = float(t1) / n_steps
        rows = _table_rows(n_steps, order)
        if kernel is None:
            kernel = memory_kernel(system.lattice, system.site_cells, h, (rows - 1) * h, size, resolution,
                                   boundary=boundary, cache=cache)
        else:
            if not isinstance(kernel, MemoryKernel):
                raise ValueError(
                    f"kernel must be a MemoryKernel (jaxion.kernel.memory_kernel), got {type(kernel).__name__}"
                )
            if abs(kernel.dt - h) > 1e-12 * h or kernel.n_times < rows:
                raise ValueError(
                    f"kernel was tabulated with dt={kernel.dt} for {kernel.n_times} times; this run needs dt={h} "
                    f"for {rows} times"
                )
        return cls(system=system, kernel=kernel, dt=h, order=order, block=block, save_sites=save_sites)

    @classmethod
    def precheck(cls, system, position, velocity, duration, *, dt=1e-3, **options):
        """:func:`check_step` before :meth:`build` tabulates a kernel (a run of straight-path
        ``duration`` periods at the step ``dt``; the other options are not needed)."""
        _require_kernel_step(system, position, velocity, duration, dt)

    def initial_state(self, position, velocity, key=None):
        """The ion at ``position (3,)`` moving at ``velocity (3,)``, the framework at rest."""
        position = jnp.asarray(position, jnp.float64)
        velocity = jnp.asarray(velocity, jnp.float64)
        _checks.require_shape("position", position, (3,))
        _checks.require_shape("velocity", velocity, (3,))
        sites = jnp.zeros((len(self.system.sites), 3))
        return KernelState(position=position, velocity=velocity, sites=sites, site_velocity=sites,
                           work=jnp.zeros(()))

    def ion(self, state):
        return state.position, state.velocity

    def energy(self, state):
        return _energy(self.system, state.position, state.velocity, state.sites, state.work)

    def observe(self, t, state, args=None):
        saved = super().observe(t, state, args)
        return dict(saved, sites=state.sites) if self.save_sites else saved

    def time_grid(self, t1, n_save):
        """``t1`` rounded up to whole steps (within 1e-12), and ``n_save`` evenly spaced step points in it
        (a NumPy array: concrete under ``jax.jit`` too)."""
        n_steps = _step_count(t1, self.dt)
        index = np.round(np.linspace(0.0, n_steps, n_save)).astype(int)
        return n_steps * self.dt, index * self.dt

    def check(self, position, velocity, duration):
        """``ValueError`` when ``dt`` cannot follow the forces met (:func:`check_step`)."""
        _require_kernel_step(self.system, position, velocity, duration, self.dt)

    @property
    def periodic_size(self):
        """``L`` of the periodic lattice whose kernel this is, ``None`` for the infinite lattice."""
        return self.kernel.size

    def integrate(self, state, t1, save_times, stop=None, key=None, progress=False):
        """The Volterra scheme of the module docstring from ``state`` (the framework at rest) for the
        ``t1 / dt`` steps; saves at the step points nearest to ``save_times``. ``key`` and ``progress``
        are not used (no noise; the scan has no progress meter)."""
        if _checks.is_concrete(state.sites, state.site_velocity, state.work) and (
            np.any(np.asarray(state.sites)) or np.any(np.asarray(state.site_velocity)) or np.any(np.asarray(state.work))
        ):
            raise ValueError("a kernel run starts with the framework at rest: use initial_state(position, velocity)")
        h = self.dt
        n_steps = int(round(float(t1) / h))
        if n_steps < 1 or abs(n_steps * h - float(t1)) > 1e-9 * float(t1):
            raise ValueError(f"t1={t1} is not a whole number of steps dt={h} (run() rounds it: use run)")
        rows = _table_rows(n_steps, self.order)
        if self.kernel.n_times < rows:
            raise ValueError(
                f"kernel was tabulated with dt={self.kernel.dt} for {self.kernel.n_times} times; this run needs "
                f"dt={h} for {rows} times"
            )
        if not _checks.is_concrete(save_times):
            raise ValueError("the kernel description saves at its step points: save_times must be concrete")
        index = np.rint(np.asarray(save_times, dtype=float) / h).astype(int)
        if index.ndim != 1 or np.any(index < 0) or np.any(index > n_steps):
            raise ValueError(f"save_times must be a (T,) array of times in [0, t1={t1}]")
        block = n_steps + 1 if self.block is None else int(self.block)
        n_blocks = -(-(n_steps + 1) // block)
        total = n_blocks * block
        table = self.kernel.values[:rows]
        # zero-padded to the FFT segments' 2 total rows (and to the order's k rows for very short runs)
        padded = max(2 * total, rows)
        table = jnp.concatenate([table, jnp.zeros((padded - table.shape[0],) + table.shape[1:])])
        onehot = jnp.asarray(np.eye(table.shape[2])[np.array(self.kernel.pairs)])  # (S, S, D): pair -> separation
        outputs = _integrate(self.system, state.position, state.velocity, stop, table, onehot, h, n_steps,
                             self.order, block, n_blocks)
        ts_all, sigma, sigma_dot, rho, energy, final = outputs
        t_final, position_final, velocity_final, energy_final, rho_final = final
        past = ts_all[index] > t_final
        freeze = lambda saved, last: jnp.where(past.reshape((-1,) + (1,) * (saved.ndim - 1)), last, saved)
        return Trajectory(
            ts=jnp.where(past, jnp.inf, ts_all[index]),
            position=freeze(sigma[index], position_final),
            velocity=freeze(sigma_dot[index], velocity_final),
            energy=freeze(energy[index], energy_final),
            t_final=t_final,
            position_final=position_final,
            velocity_final=velocity_final,
            energy_final=energy_final,
            site_displacement=freeze(rho[index], rho_final) if self.save_sites else None,
        )


# ----------------------------------------------------------------------------- the protocol


def simulate(system, position, velocity, t1, *, stop_z=None, size=None, dt=1e-3, n_save=200, kernel=None,
             order=8, block=64, resolution=None, boundary="auto", save_sites=False,
             cache="default"):
    """Integrate the ion and its interacting sites with the lattice integrated out (module docstring):
    :func:`check_step` (before the kernel is tabulated), :meth:`KernelDynamics.build`, then
    :func:`jaxion.dynamics.run` with ``CrossedPlane(stop_z)``.

    Args:
        system: the :class:`~jaxion.System`.
        position, velocity: ``(3,)`` initial ion state (vmappable); the framework starts at rest.
        t1: duration in periods (concrete).
        stop_z: freeze the run at the end of the first step with ``sigma_z >= stop_z``.
        size: ``L`` of the periodic lattice, or ``None`` for the infinite lattice.
        dt: time step (periods); rounded so that ``t1`` is a whole number of steps.
        n_save: number of evenly spaced save times in ``[0, t1]`` (on the step grid).
        kernel: a precomputed :class:`~jaxion.memory.MemoryKernel` for this system's sites and step
            (else built by :func:`~jaxion.memory.memory_kernel` and kept in ``cache``).
        order: convolution-quadrature order (2..10; Gregory rule with ``order - 1`` end corrections).
        block: steps per block of the fast history sum, or ``None`` for the direct ``O(n^2)`` sum.
        resolution: ``(n_radial, n_face)`` of the infinite lattice's Brillouin-zone rule.
        boundary: how the infinite lattice's kernel is built (:func:`~jaxion.memory.memory_kernel`):
            ``"auto"``, ``"quadrature"``, ``"absorbing"`` or an :class:`~jaxion.memory.AbsorbingBoundary`.
        save_sites: also save the sites' displacements ``(T, S, 3)``.
        cache: the :class:`~jaxion.memory.KernelCache` that keeps built kernels, ``"default"`` for
            ``KernelDynamics.default_cache`` (shared by all runs), or ``None`` to build afresh.

    Returns:
        :class:`~jaxion.trajectory.Trajectory`.

    Raises:
        ValueError: bad options, or ``dt`` too large for the forces met (:func:`check_step`).
    """
    _checks.require_run_length(t1, dt)
    _checks.require_integer("n_save", n_save, low=1)
    _checks.require_integer("order", order, low=2, high=10)
    check_step(system, position, velocity, t1, stop_z=stop_z, dt=dt)
    if block is not None:
        _checks.require_integer("block (or None)", block, low=1)
    dynamics = KernelDynamics.build(system, t1, dt=dt, size=size, order=order, block=block, resolution=resolution,
                                    boundary=boundary, save_sites=save_sites, kernel=kernel, cache=cache)
    stop = None if stop_z is None else CrossedPlane(stop_z)
    return run(dynamics, dynamics.initial_state(position, velocity), t1, saveat=n_save, stop=stop)


def check_step(system, position, velocity, t1, *, stop_z=None, dt=1e-3, **_):
    """For a concrete start, ``ValueError`` when ``dt`` cannot follow the forces met
    (:func:`jaxion.run_checks.require_step`): the startup's fixed-point iteration gains a factor
    ``(2 pi omega h)^2`` per pass, so it needs ``2 pi omega dt < 1`` with ``omega`` the lattice's
    highest frequency with the ion-site curvature; and ``STEPS_PER_RANGE`` steps per crossing of the
    potential's range resolve the force pulse."""
    _checks.require_positive("dt", dt)
    if not _checks.is_concrete(system):
        return
    KernelDynamics.precheck(system, position, velocity, run_duration(position, velocity, t1, stop_z), dt=dt)


# ----------------------------------------------------------------------------- the Volterra scheme


def _table_rows(n_steps, order):
    """Kernel times a run of ``n_steps`` needs: ``K(t_0..t_n)``, and at least the ``k = order - 1``
    lags of the startup rule (:func:`_startup`) even when the run is shorter than that."""
    return max(n_steps + 1, order - 1)


def _startup(system, sigma0, v0, table, onehot, h, order, forces_at, site_sum, iterations=8):
    """States at steps ``0..k-1`` from the implicit startup rule (:func:`startup_weights`), by fixed-point
    iteration on the forces (each pass gains a factor ~ ``(2 pi omega_max h)^2``).

    The product ``K(t_n - s) F(s)`` is interpolated through nodes beyond ``t_n`` too, which uses ``K``
    at negative lags: ``K(-t) = -K(t)``, ``K'(-t) = K'(t)``.
    """
    k = order - 1
    weights = jnp.asarray(startup_weights(order))  # (n, m)
    lag = np.arange(k)[:, None] - np.arange(k)[None, :]
    sign = np.stack([np.sign(lag), np.ones_like(lag)], axis=-1)  # K odd, K' even
    kern = table[np.abs(lag)] * jnp.asarray(sign, dtype=float)[:, :, :, None, None, None]  # (n, m, 2, D, 3, 3)
    kern = kern * weights[:, :, None, None, None, None]
    t = jnp.arange(k) * h
    inverse_mass = system.inverse_mass

    def positions(forces):
        force_sites, force_ion = forces
        rho = h * jax.vmap(site_sum, in_axes=(0, None))(kern, force_sites)  # (n, 2, S, 3)
        ion = jnp.einsum("nm,nm,mx->nx", weights, lag * h, force_ion)
        sigma = sigma0 + v0 * t[:, None] + FOUR_PI2 * inverse_mass * h * ion
        return rho, sigma

    def improve(forces, _):
        rho, sigma = positions(forces)
        return jax.vmap(forces_at)(rho[:, 0], sigma), None

    guess = jax.vmap(forces_at)(jnp.zeros((k,) + onehot.shape[:1] + (3,)), sigma0 + v0 * t[:, None])
    forces, _ = jax.lax.scan(improve, guess, None, length=iterations)
    rho, sigma = positions(forces)
    force_sites, force_ion = jax.vmap(forces_at)(rho[:, 0], sigma)
    sigma_dot = v0 + FOUR_PI2 * inverse_mass * h * (weights @ force_ion)
    rho_dot = rho[:, 1]
    power = jnp.sum(force_sites * rho_dot, axis=(1, 2))
    return dict(rho=rho[:, 0], sigma=sigma, sigma_dot=sigma_dot, rho_dot=rho_dot, work=h * (weights @ power))



@functools.partial(jax.jit, static_argnames=("h", "n_steps", "order", "block", "n_blocks"))
def _integrate(system, sigma0, v0, stop, table, onehot, h, n_steps, order, block, n_blocks):
    """The explicit Volterra scheme of the module docstring from the ion's ``sigma0``, ``v0`` (the
    framework at rest) for ``n_steps`` steps of ``h``, with the kernel ``table (2 total, 2, D, 3, 3)``
    (zero-padded) and the pair map ``onehot (S, S, D)``; ``stop`` (a stop object or ``None``)
    freezes the state at the first step point where ``stop(t, sigma, sigma')`` holds
    (:class:`~jaxion.dynamics.AbstractStop`).

    Returns:
        ``(ts, sigma, sigma', rho, energy)`` per step (``total`` rows) and the final
        ``(t, sigma, sigma', energy, rho)``.
    """
    n_sites = onehot.shape[0]
    k = order - 1
    rows = 2 * k - 1
    lower, upper, diagonal = (jnp.asarray(a) for a in quadrature_tables(order))
    total = n_blocks * block
    inverse_mass = system.inverse_mass
    lags = np.arange(block)

    def site_sum(kern, forces):
        """``sum_b K_ab F_b`` for ``kern (..., 2, D, 3, 3)``, ``forces (..., S, 3)`` -> ``(2, S, 3)``."""
        return jnp.einsum("...cdxy,abd,...by->cax", kern, onehot, forces)

    def forces_at(rho, sigma):
        grad_rho, grad_sigma = jax.grad(system.interaction, argnums=(0, 1))(rho, sigma)
        return -grad_rho, -grad_sigma

    start = _startup(system, sigma0, v0, table, onehot, h, order, forces_at, site_sum)

    def step(state, xs, j):
        i, far = xs  # far: the FFT part of the history sum at this step, (2, S, 3)
        n = j * block + i
        r = jnp.minimum(n, rows)
        dl, du, wd = lower[r], upper[r], diagonal[r]
        # sites: history (m < n) for rho and rho'
        near = site_sum(table[jnp.maximum(i - lags, 0)], state["buffer"])
        low = site_sum(dl[:, None, None, None, None] * table[jnp.clip(n - jnp.arange(k), 0)], state["start_sites"])
        up = site_sum(du[1:, None, None, None, None] * table[1:k], state["recent_sites"][: k - 1])
        history = h * (near + far + low + up)
        in_start = n < k
        pick = lambda value, name: jnp.where(in_start, start[name][jnp.minimum(n, k - 1)], value)
        rho = pick(history[0], "rho")
        # ion: sigma_n = sigma0 + v0 t_n + (4 pi^2 / mu) h^2 sum_m w (n - m) f_m
        weighted = state["P"] + jnp.einsum("j,j,jx->x", dl, n - jnp.arange(k), state["start_ion"])
        weighted = weighted + jnp.einsum("j,j,jx->x", du[1:], jnp.arange(1, k), state["recent_ion"][: k - 1])
        t = n * h
        sigma = pick(sigma0 + v0 * t + FOUR_PI2 * inverse_mass * h**2 * weighted, "sigma")
        force_sites, force_ion = forces_at(rho, sigma)
        # velocities and framework work: sums over m <= n
        v_sum = state["A"] + wd * force_ion + dl @ state["start_ion"] + du[1:] @ state["recent_ion"][: k - 1]
        sigma_dot = pick(v0 + FOUR_PI2 * inverse_mass * h * v_sum, "sigma_dot")
        rho_dot = pick(history[1] + h * wd * site_sum(table[0], force_sites)[1], "rho_dot")
        power = jnp.sum(force_sites * rho_dot)
        work = pick(h * (state["G"] + wd * power + dl @ state["start_power"] + du[1:] @ state["recent_power"][: k - 1]),
                    "work")
        energy = _energy(system, sigma, sigma_dot, rho, work)
        first = (n < k) & (jnp.arange(k) == n)
        hit = jnp.asarray(False) if stop is None else jnp.asarray(stop(t, sigma, sigma_dot))
        crossed = (~state["stopped"]) & hit & (n <= n_steps)
        final = jax.tree_util.tree_map(
            lambda new, old: jnp.where(crossed, new, old), (t, sigma, sigma_dot, energy, rho), state["final"]
        )
        new = dict(
            state,
            buffer=state["buffer"].at[i].set(force_sites),
            A=state["A"] + force_ion,
            G=state["G"] + power,
            start_sites=jnp.where(first[:, None, None], force_sites, state["start_sites"]),
            start_ion=jnp.where(first[:, None], force_ion, state["start_ion"]),
            start_power=jnp.where(first, power, state["start_power"]),
            recent_sites=jnp.concatenate([force_sites[None], state["recent_sites"][:-1]]),
            recent_ion=jnp.concatenate([force_ion[None], state["recent_ion"][:-1]]),
            recent_power=jnp.concatenate([power[None], state["recent_power"][:-1]]),
            stopped=state["stopped"] | crossed,
            final=final,
        )
        new["P"] = state["P"] + new["A"]  # P_{n+1} = sum_{m<=n} (n + 1 - m) f_m
        return new, (t, sigma, sigma_dot, rho, energy)

    def leaf(state, far, j):
        """Block ``j`` given its FFT part ``far (block, 2, S, 3)``: ``(state, forces (block, S, 3), outputs)``.
        Blocks after the stop, and the padding past ``n_steps``, are skipped (frozen state)."""

        def active(state):
            local = dict(state, buffer=jnp.zeros((block, n_sites, 3)))
            local, out = jax.lax.scan(lambda c, xs: step(c, xs, j), local, (jnp.arange(block), far))
            return local, local["buffer"], out

        def frozen(state):
            t, sigma, sigma_dot, energy, rho = state["final"]
            ts = (j * block + jnp.arange(block)) * h
            rep = lambda x: jnp.broadcast_to(x, (block,) + x.shape)
            return state, jnp.zeros((block, n_sites, 3)), (ts, rep(sigma), rep(sigma_dot), rep(rho), rep(energy))

        # nested so that the padding test, which is never batched, stays a branch under vmap
        return jax.lax.cond(j * block > n_steps, frozen, lambda s: jax.lax.cond(s["stopped"], frozen, active, s), state)

    def segment(level):
        """``block 2^level`` steps from block ``j``: its two halves in turn, the first half's forces convolved
        by FFT with ``K[0:2s]`` into the second half (``s = block 2^(level-1)``). Every array here is the
        size of the segment, so a block touches ``O(block)`` state per level, not ``O(n)``."""
        if level == 0:
            return leaf
        child, half = segment(level - 1), block * 2 ** (level - 1)
        spectrum = jnp.fft.rfft(table[: 2 * half], axis=0)
        zeros = jnp.zeros((half, 2, n_sites, 3))

        def square(forces):
            x = jnp.fft.rfft(forces, n=2 * half, axis=0)
            return jnp.fft.irfft(jnp.einsum("wcdxy,abd,wby->wcax", spectrum, onehot, x), n=2 * half, axis=0)[half:]

        def halves_of(state, far, j):
            def body(carry, xs):
                state, extra = carry
                k, far_k = xs
                state, forces, out = child(state, far_k + extra, j + k * 2 ** (level - 1))
                needed = (k == 0) & ((j + 2 ** (level - 1)) * block <= n_steps)  # second half not all padding
                extra = jax.lax.cond(needed, lambda f, s: jax.lax.cond(s, lambda f: zeros, square, f),
                                     lambda f, s: zeros, forces, state["stopped"])
                return (state, extra), (forces, out)

            halves = far.reshape((2, half) + far.shape[1:])
            (state, _), (forces, out) = jax.lax.scan(body, (state, zeros), (jnp.arange(2), halves))
            merge = lambda a: a.reshape((2 * half,) + a.shape[2:])
            return state, merge(forces), jax.tree_util.tree_map(merge, out)

        return halves_of

    zeros3 = jnp.zeros(3)
    state = dict(
        buffer=jnp.zeros((block, n_sites, 3)),
        A=zeros3,
        P=zeros3,
        G=jnp.zeros(()),
        start_sites=jnp.zeros((k, n_sites, 3)),
        start_ion=jnp.zeros((k, 3)),
        start_power=jnp.zeros(k),
        recent_sites=jnp.zeros((k, n_sites, 3)),
        recent_ion=jnp.zeros((k, 3)),
        recent_power=jnp.zeros(k),
        stopped=jnp.asarray(False),
        final=(jnp.asarray(0.0), sigma0, v0, jnp.asarray(0.0), jnp.zeros((n_sites, 3))),
    )
    levels = max(0, math.ceil(math.log2(n_blocks)))  # blocks padded to 2^levels (table holds K to 2 total)
    padded = block * 2**levels
    state, _, out = segment(levels)(state, jnp.zeros((padded, 2, n_sites, 3)), jnp.asarray(0))
    ts, sigma, sigma_dot, rho, energy = (x[:total] for x in out)
    end = (n_steps * h, sigma[n_steps], sigma_dot[n_steps], energy[n_steps], rho[n_steps])
    final = jax.tree_util.tree_map(lambda a, b: jnp.where(state["stopped"], a, b), state["final"], end)
    return ts, sigma, sigma_dot, rho, energy, final
