"""The harmonic force of a periodic ``L^dim`` framework as a stencil (physics.md section 2).

With ``rho`` the displacements (three components, each ``(L,)`` for a chain or ``(L, L, L)`` for a
cubic lattice), the framework's restoring force is ``-m W rho``,

    m (W rho)_n = kappa rho_n + sum_{b, +-} Phi_b (rho_n - rho_{n+b}),

the sum over the bond pairs ``+-b`` (:attr:`jaxion.lattice.Lattice.offsets`), cell indices modulo
``L``. Per pair it is ``Phi_b lap_b`` with ``lap_b = 2 rho_n - rho_{n+b} - rho_{n-b}``, contracted with
``Phi_b = k_long u u^T + k_trans (1 - u u^T)`` using the bond's static direction ``u`` (zero entries
of ``u`` cost nothing; the ``k_trans`` term is skipped where every ``k_trans`` is concretely zero).
In Fourier space ``m W`` is ``m D(q)`` (:meth:`jaxion.lattice.Lattice.dynamical_matrix`).

The neighbours are read from a periodically wrapped copy, the halo form ``halo = G rho``: three
``(L + 2w, ...)`` arrays with a periodic halo of ``w`` cells (the bonds' reach) on every face, ``G``
the periodic embedding (:meth:`PeriodicStencil.wrap`). Flattened, every neighbour ``rho_{n+-b}`` of a
cell is then the contiguous 1-D shift by ``s_b = sum_d b_d stride_d`` (the halo array's strides), so
the whole stencil is one fusion of unit-stride loops (:meth:`PeriodicStencil._stencil`). The
reverse-mode derivatives are hand-written: the stencil's is the stencil itself applied to the
cotangent (its exact transpose), ``G``'s folds the halos back onto the faces they copy.

Only the framework enters: :class:`PeriodicStencil` holds a :class:`~jaxion.lattice.Lattice` (whose
springs may be traced and differentiated) and the box. ``jaxion.full`` integrates the ion plus the
lattice with it, ``jaxion.slab`` one slab of a lattice sharded over devices (its own halo exchange),
``jaxion.memory`` an absorbing box's impulse response.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .lattice import Lattice


def has_transverse_springs(lattice):
    """``False`` when every ``k_trans`` of ``lattice`` is concretely zero (the stencil then skips that
    term); ``True`` otherwise, traced springs included. Decide it where the lattice is concrete and keep
    the answer static (a description holding it stays fast when later traced)."""
    k_trans = lattice.k_trans
    return not (_checks.is_concrete(k_trans) and np.all(np.asarray(k_trans) == 0))


class PeriodicStencil(eqx.Module):
    """The spring force ``-m W rho`` of a periodic ``L^dim`` lattice (module docstring).

    Attributes:
        lattice: the :class:`~jaxion.lattice.Lattice` (springs, confinement; may be traced).
        size: ``L``, masses per lattice axis (static).
        transverse: static; ``False`` skips the ``k_trans`` term. Default: ``False`` when every
            ``k_trans`` is concretely zero.
    """

    lattice: Lattice
    size: int = eqx.field(static=True)
    transverse: bool = eqx.field(static=True)

    def __init__(self, lattice, size, transverse=None):
        self.lattice = lattice
        self.size = int(size)
        self.transverse = has_transverse_springs(lattice) if transverse is None else transverse

    @property
    def shape(self):
        """``(3, L, ...)``: shape of ``rho``."""
        return (3,) + (self.size,) * self.lattice.dim

    @property
    def width(self):
        """``w``: the halo width, the largest bond offset along any axis (cells)."""
        return max(abs(c) for offset in self.lattice.offsets for c in offset)

    def wrap(self, rho):
        """``G rho``: three components ``(L, ...)`` (a tuple, or one ``(3, L, ...)`` array) -> a
        tuple of three ``(L + 2w, ...)`` with periodic halos, each in one pass that fuses into its
        consumer (``jnp.pad(mode="wrap")`` makes one pass per axis). Its reverse-mode derivative
        ``G^T`` folds the halos back onto the faces they copy (slices, not a scatter)."""
        return tuple(_wrap(component, self.width) for component in rho)

    def interior(self, halo):
        """``rho`` from its wrapped form: three ``(n_1, ...)`` -> three ``(n_1 - 2w, ...)``, the
        halo of ``w`` cells cropped from every face (``(L + 2w, ...)`` -> ``(L, ...)`` here)."""
        width = self.width
        return tuple(component[tuple(slice(width, n - width) for n in component.shape)] for component in halo)

    def spring_force(self, rho, scale=1.0):
        """``-scale * m W rho`` (the harmonic force, minus the gradient of ``rho^T V rho / 2``):
        :meth:`force` on ``G rho`` (:meth:`wrap`).

        Args:
            rho: ``(3, L, ...)`` displacements (component-major).
            scale: factor folded into the spring constants (``4 pi^2 / m`` gives ``rho''``).

        Returns:
            ``(3, L, ...)``, same dtype as ``rho``.
        """
        return jnp.stack(self.force(self.wrap(rho), scale))

    def force(self, halo, scale=1.0):
        """``-scale * m W rho`` from the wrapped displacements ``halo = G rho`` (three
        ``(L + 2w, ...)``): three ``(L, ...)``. Its reverse-mode derivative is the same stencil
        applied to the cotangent (the exact transpose, not autodiff's transposed slices, which on
        CPU cost ~100x the stencil itself)."""
        return _springs((self, scale, halo))

    def _stencil(self, halo, scale, full_range=False):
        """The stencil of :meth:`force` on wrapped displacements ``halo`` (three components
        ``(P, ...)``, ``P = L + 2w``), returning the force on the box (three ``(L, ...)``).

        Flattened, every neighbour ``rho_{n+-b}`` of a box cell is the contiguous 1-D shift by
        ``s_b = sum_d b_d stride_d`` (strides of the ``halo`` array), so the whole stencil is one
        fusion of unit-stride loops (on CPU 2.4x faster than static 3-D slices of the halo and ~8x
        faster than ``jnp.roll``); the ends of the flat range touch only halo cells, which are
        cropped away.

        ``full_range=True`` evaluates the same formula at every cell of the ``P^dim`` array (zeros
        beyond it) and returns three ``(P, ...)``: applied to a cotangent embedded with a zero halo,
        that is the exact transpose ``S^T`` of the stencil ``S`` (the bond sum is symmetric in
        ``+-b``, and the diagonal terms vanish on the zero halo).
        """
        lattice = self.lattice
        shape = halo[0].shape
        dtype = halo[0].dtype
        cast = lambda x: (scale * x).astype(dtype)
        k_long, k_trans, kappa = cast(lattice.k_long), cast(lattice.k_trans), cast(lattice.confinement)
        strides = [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]
        shifts = [sum(c * stride for c, stride in zip(offset, strides)) for offset in lattice.offsets]
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
        if full_range:
            return tuple(component.reshape(shape) for component in force)
        return self.interior([jnp.pad(component, (reach, reach)).reshape(shape) for component in force])


@eqx.filter_custom_vjp
def _springs(inputs):
    """``stencil._stencil(halo, scale)`` for ``inputs = (stencil, scale, halo)``, with the VJP below."""
    stencil, scale, halo = inputs
    return stencil._stencil(halo, scale)


@_springs.def_fwd
def _springs_fwd(perturbed, inputs):
    stencil, scale, halo = inputs
    return stencil._stencil(halo, scale), None


@_springs.def_bwd
def _springs_bwd(residuals, cotangent, perturbed, inputs):
    """``halo``: the exact transpose ``S^T g``, the stencil over the whole wrapped array of ``g``
    embedded with a zero halo (:meth:`PeriodicStencil._stencil`, ``full_range``); through ``G^T``
    this is ``W g`` (``W`` symmetric). Springs and ``scale``: the force is linear in them at fixed
    ``halo``; autodiff of that map only reduces products of ``g`` with shifts of ``halo``."""
    stencil, scale, halo = inputs
    _, parameter_vjp = eqx.filter_vjp(lambda s, c: s._stencil(halo, c), stencil, scale)
    stencil_bar, scale_bar = parameter_vjp(cotangent)
    halo_bar = (None,) * len(halo)
    if any(perturbed[2]):
        embedded = tuple(jnp.pad(component, stencil.width) for component in cotangent)
        halo_bar = tuple(bar if wanted else None
                         for bar, wanted in zip(stencil._stencil(embedded, scale, full_range=True), perturbed[2]))
    return stencil_bar, scale_bar, halo_bar


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
