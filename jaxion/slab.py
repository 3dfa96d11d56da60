"""One lattice over several devices: the full description (``jaxion.full``) in slabs along axis 0.

The periodic ``L^dim`` lattice is cut into ``n`` slabs of ``l = L / n`` planes along its first axis,
slab ``d`` (planes ``d l .. (d + 1) l - 1``) on device ``d`` of a 1-D mesh, and the whole run
(solver loop, saves, stop) executes inside one ``jax.shard_map``: no host round trip per step.
Each device holds its slab's state in :class:`~jaxion.full.FullLattice`'s own form, shapes

    halo:   three ``(l + 2w, L + 2w, ...)``  displacements with a halo of ``w`` cells (the bonds' reach)
    rho':   three ``(l, L, ...)``            velocities
    sigma, sigma': ``(3,)``                  the ion, the same on every device

and the physics is FullLattice's, unchanged, through :class:`SlabLattice` (a FullLattice that
knows it holds one slab). Only three things differ from one device:

* the halo (:meth:`SlabStencil.wrap`, the stencil of :attr:`SlabLattice.stencil`). The drift
  ``dq = h G rho'`` writes the halo from the velocities; along axis 0 the ``w`` planes on each side
  come from the neighbouring slabs, exchanged with ``lax.ppermute`` (slab ``d`` sends its last ``w``
  planes to ``d + 1`` and its first ``w`` to ``d - 1``, periodically), and the other axes wrap
  locally. The nearest and next-nearest bonds of the simple cubic lattice reach ``w = 1`` plane; the
  halo cells then hold exactly the arithmetic of the cells they copy, as on one device. The spring
  stencil is the framework's own (:class:`~jaxion.stencil.PeriodicStencil`, whose flat neighbour
  shifts are the halo array's strides and whose crop is the array's own extent less ``w`` per face)
  on the slab's halo-padded block;
* the interacting sites (:meth:`SlabLattice._sites`, :meth:`SlabLattice._add_at_sites`): a site in
  plane ``i_0`` lives on slab ``i_0 // l``. Each device reads the displacements of the sites it
  owns (zero for the others) and ``lax.psum`` assembles ``rho_S (S, 3)``; every entry has one
  non-zero term, so the sum is exact and every device then evaluates the same interaction: the
  force on the ion (Eq. 3) is bitwise the single-device one, and the same on every device (which
  keeps the stop condition, and so the loop's trip count, the same everywhere). The sites' forces
  (Eq. 4) are added only where the site lives;
* the energy (:meth:`SlabLattice.energy`): the framework's kinetic and harmonic sums are psummed
  over slabs (to rounding of the single-device sum's order).

(Its kick term takes the acceleration with the sites' forces scattered onto the slab,
:meth:`SlabLattice.terms`: the single-device kick's fused increment spreads them over the whole
lattice.) The run is :func:`jaxion.dynamics.run` of :class:`~jaxion.full.FullDynamics` with its
lattice replaced by the slab's, so the solvers, step grid, saves and stop are the single-device
ones. :func:`simulate_sharded` equals :func:`jaxion.full.simulate` with the same solver and step
to rounding (the tests ask 1e-12 over a single pass and a trapped run; 1e-15 is observed after
400 steps). ``L`` must be a multiple of the device count, with at least ``w`` planes per slab.

Per step and device the work is ``L^dim / n`` cells and the exchange ``2 w L^(dim - 1)`` cells per
component (one ``ppermute`` pair per drift: per step of velocity Verlet, six per Blanes-Moan step).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from . import _checks
from .dynamics import CrossedPlane, run, straight_duration
from .full import FullDynamics, FullLattice, _Drift, _Kick
from .run_checks import BOX_TOL
from .sharding import device_mesh, mesh_axis
from .solvers import Rate
from .stencil import PeriodicStencil

SLAB_AXIS = "slab"


class SlabStencil(PeriodicStencil):
    """The :class:`~jaxion.stencil.PeriodicStencil` of one slab of ``l = L / n`` planes along axis 0,
    inside ``shard_map`` over ``axis_name``: its halo comes from the neighbouring slabs.

    Attributes (besides PeriodicStencil's; ``size`` is the whole lattice's ``L``):
        slabs: ``n``, the number of slabs (devices on the mesh axis), static.
        axis_name: the mesh axis the slabs lie along, static.
    """

    slabs: int = eqx.field(static=True)
    axis_name: str = eqx.field(static=True)

    def __init__(self, lattice, size, transverse, slabs, axis_name):
        super().__init__(lattice, size, transverse)
        self.slabs = slabs
        self.axis_name = axis_name

    @property
    def shape(self):
        """``(3, l, L, ...)``: shape of one slab's ``rho``."""
        return (3, self.size // self.slabs) + (self.size,) * (self.lattice.dim - 1)

    def wrap(self, rho):
        """``G rho`` of the slab: three ``(l, L, ...)`` -> three ``(l + 2w, L + 2w, ...)``; the ``w``
        planes on each side along axis 0 come from the neighbouring slabs (``ppermute``, periodic),
        the other axes wrap locally."""
        width, count = self.width, self.slabs
        forward = [(d, (d + 1) % count) for d in range(count)]
        backward = [(d, (d - 1) % count) for d in range(count)]

        def one(component):
            low = jax.lax.ppermute(component[-width:], self.axis_name, forward)
            high = jax.lax.ppermute(component[:width], self.axis_name, backward)
            padded = jnp.concatenate([low, component, high], axis=0)
            return jnp.pad(padded, [(0, 0)] + [(width, width)] * (padded.ndim - 1), mode="wrap")

        return tuple(one(component) for component in rho)


class SlabLattice(FullLattice):
    """The :class:`~jaxion.full.FullLattice` of one slab, inside ``shard_map`` over ``axis_name``.

    Attributes (besides FullLattice's; ``size`` is the whole lattice's ``L``):
        slabs: ``n``, the number of slabs (devices on the mesh axis), static.
        axis_name: the mesh axis the slabs lie along, static.
    """

    slabs: int = eqx.field(static=True)
    axis_name: str = eqx.field(static=True)

    def __init__(self, system, size, slabs, axis_name, dtype=jnp.float64):
        self.slabs = int(slabs)
        self.axis_name = axis_name
        super().__init__(system, size, dtype)
        if size % slabs:
            raise ValueError(f"size={size} must be a multiple of the {slabs} devices the lattice is split over")
        if size // slabs < self.width:
            raise ValueError(
                f"size={size} over {slabs} devices leaves {size // slabs} planes per slab, fewer than the "
                f"bonds' reach of {self.width}: use fewer devices or a larger lattice"
            )

    @property
    def stencil(self):
        """The slab's :class:`SlabStencil` (halo from the neighbouring slabs), built on each use."""
        return SlabStencil(self.system.lattice, self.size, self.transverse, self.slabs, self.axis_name)

    @property
    def planes(self):
        """``l = L / n``: planes per slab."""
        return self.size // self.slabs

    def _owned(self):
        """Per site: ``(owned (S,) bool, local cell indices in the halo array)``; the axis-0 index
        is the site's plane within its own slab."""
        first, *rest = self.site_index
        first = np.asarray(first)
        owner = first // self.planes
        cells = (tuple(first - owner * self.planes + self.width),) + tuple(
            tuple(i + self.width for i in axis) for axis in rest)
        return jnp.asarray(owner) == jax.lax.axis_index(self.axis_name), cells

    def _sites(self, halo):
        """``rho_S (S, 3)`` on every device: each slab reads its own sites, ``psum`` (exact: one
        non-zero term per entry) assembles them."""
        owned, cells = self._owned()
        local = jnp.stack([component[cells] for component in halo], axis=-1)
        return jax.lax.psum(jnp.where(owned[:, None], local, 0.0), self.axis_name)

    def _add_at_sites(self, rho, on_sites):
        """``rho`` (three ``(l, L, ...)``) plus ``on_sites (3, S)`` at the sites this slab owns."""
        owned, cells = self._owned()
        cells = tuple(np.asarray(axis) - self.width for axis in cells)
        return tuple(component.at[cells].add(jnp.where(owned, value, 0.0).astype(component.dtype))
                     for component, value in zip(rho, on_sites))

    def terms(self):
        """FullLattice's drift and kick terms, the kick through :meth:`acceleration` (the springs
        plus the sites' forces scattered onto this slab's own sites; the single-device kick's fused
        increment spreads the sites' forces over the whole ``L^dim`` lattice)."""
        return Rate(_Drift(self)), Rate(_Kick(self))

    def energy(self, y):
        """Total energy (FullLattice's): the framework's sums over the slabs by ``psum``, the ion
        and its interaction once."""
        (halo, sigma), (_, sigma_dot) = y
        ion = self.system.total_energy(self._sites(halo).astype(jnp.float64), sigma, sigma_dot)
        own = super().energy(y) - jnp.where(jax.lax.axis_index(self.axis_name) == 0, 0.0, ion)
        return jax.lax.psum(own, self.axis_name)


def simulate_sharded(system, position, velocity, t1, *, size=None, dt=1e-3, solver="verlet", mesh=None,
                     axis_name=None, stop_z=None, n_save=200, save_sites=False, dtype=jnp.float64, box_tol=BOX_TOL):
    """:func:`jaxion.full.simulate` (fixed step) with the lattice split into slabs over devices.

    The description is :class:`~jaxion.full.FullDynamics` (built, and its checks run, exactly as
    ``jaxion.full.simulate`` does) with its lattice replaced by the :class:`SlabLattice` of each
    device, integrated by :func:`jaxion.dynamics.run` inside one ``shard_map``.

    Args:
        system: the :class:`~jaxion.System`.
        position, velocity: ``(3,)`` initial ion state; the framework starts at rest.
        t1: duration in periods.
        size: ``L``, a multiple of the number of devices ``n`` with ``L / n`` at least the bonds'
            reach; ``None``: the box that holds the run (:func:`jaxion.full.infinite_lattice_size`),
            which must then be a multiple of ``n``.
        dt: fixed time step (periods).
        solver: one of ``jaxion.full.SOLVERS`` at a fixed step: "verlet" (default), "symplectic"
            (Blanes-Moan), or a Runge-Kutta tableau.
        mesh: a :class:`jax.sharding.Mesh`; ``None`` for every device in a 1-D mesh
            (:func:`jaxion.sharding.device_mesh`).
        axis_name: the mesh axis the slabs lie along (``None``: the only axis of a 1-D mesh).
        stop_z, n_save, save_sites, dtype, box_tol: as :func:`jaxion.full.simulate`.

    Returns:
        :class:`~jaxion.trajectory.Trajectory`, equal to :func:`jaxion.full.simulate`'s to rounding.

    Raises:
        ValueError: as :func:`jaxion.full.simulate`; ``size`` not a multiple of the devices on the
            axis, or slabs thinner than the bonds' reach; a mesh without ``axis_name``.
    """
    mesh = device_mesh(axis_name=SLAB_AXIS) if mesh is None else mesh
    axis = mesh_axis(mesh, axis_name)
    _checks.require_integer("n_save", n_save, low=1)
    dynamics = FullDynamics.build(system, t1, size=size, dt=dt, solver=solver, dtype=dtype, save_sites=save_sites,
                                  box_tol=box_tol)
    position = jnp.asarray(position, jnp.float64)
    velocity = jnp.asarray(velocity, jnp.float64)
    _checks.require_shape("position", position, (3,))
    _checks.require_shape("velocity", velocity, (3,))
    stop = None if stop_z is None else CrossedPlane(stop_z)
    slabs = SlabLattice(system, dynamics.size, mesh.shape[axis], axis, dtype)
    dynamics.check(position, velocity, straight_duration(position, velocity, t1, stop))
    dynamics = eqx.tree_at(lambda d: d.lattice, dynamics, slabs)
    return _sharded_run(dynamics, mesh, position, velocity, stop, float(t1), n_save)


@eqx.filter_jit
def _sharded_run(dynamics, mesh, position, velocity, stop, t1, n_save):
    """:func:`jaxion.dynamics.run` as one ``shard_map`` over ``mesh``: every input replicated (the
    lattice starts at rest, so each slab is made where it lives), the trajectory replicated. The
    description's arrays (the system's parameters) are traced: new values reuse the compilation."""
    dynamic, static = eqx.partition((dynamics, position, velocity, stop), eqx.is_array)

    def slab_run(dynamic):
        dynamics, position, velocity, stop = eqx.combine(dynamic, static)
        return run(dynamics, dynamics.initial_state(position, velocity), t1, saveat=n_save, stop=stop)

    # check_vma=False: diffrax's loop carries mix per-slab and replicated values (the ion's state is
    # replicated by construction: it only ever sees psummed inputs)
    return jax.shard_map(slab_run, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)(dynamic)
