"""Sites that follow a travelling ion: a fixed-capacity cell stencil with a smooth cut-off.

The framework is a simple Bravais lattice with one site per cell, ``x_n = a n``. For an ion at
``R`` in cell ``c = floor(R / a)`` every site within the cut-off ``r_c`` of *any* point of that
cell lies in the static stencil

    c + o,   o in O = { o integer : dist(cube [0, 1]^3, o) <= r_c / a }

so the selection has a fixed capacity ``|O|`` (static shapes under ``jit``/``vmap``), is
complete by construction (it can never overflow), and is re-selected simply by recomputing
``c`` as the ion moves. Sites farther than ``r_c`` get weight zero through the smooth switch

    s(r) = 1 - 10 x^3 + 15 x^4 - 6 x^5,   x = clip((r - r_on) / (r_c - r_on), 0, 1)

(C2: the energy, force and Hessian are continuous when a site enters or leaves the stencil).
Sites are returned at their unwrapped positions ``a (c + o)``, which are the minimum images of
the ion's neighbours; in a periodic ``L^3`` box their lattice indices are ``(c + o) mod L``.

``NeighbourSites.cell_corners`` is the follow-up paper's choice (the 8 corners of the current
cell, no cut-off): the energy then jumps when the ion changes cell. It is kept for comparison.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def smooth_switch(distance, inner, outer):
    """``s(r)``: 1 below ``inner``, 0 above ``outer``, C2 in between; ``(...)`` like ``distance``."""
    x = jnp.clip((distance - inner) / (outer - inner), 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def _stencil(reach):
    """Integer offsets ``o (C, 3)`` whose distance to the unit cube ``[0, 1]^3`` is ``<= reach``."""
    span = int(np.ceil(reach)) + 1
    grid = np.arange(-span, span + 2)
    offsets = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    gap = np.maximum(0, np.maximum(-offsets, offsets - 1))
    keep = np.sum(gap.astype(float) ** 2, axis=1) <= reach**2 + 1e-12
    return offsets[keep]


class NeighbourSites(eqx.Module):
    """The framework sites an ion at ``R`` interacts with.

    Attributes:
        offsets: static ``(C, 3)`` integer stencil relative to the ion's cell (``C`` the capacity).
        spacing: lattice constant ``a`` (Å).
        cutoff: ``r_c`` (Å), or ``inf`` for the 8-corner option (no switch).
        switch_width: the switch acts over ``[r_c - width, r_c]`` (Å).
        size: periodic box ``L`` (cells per axis, static) or ``None`` for an infinite lattice.
    """

    offsets: tuple = eqx.field(static=True)
    spacing: float = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)
    switch_width: float = eqx.field(static=True)
    size: int | None = eqx.field(static=True)

    def __init__(self, spacing, cutoff, switch_width=1.0, size=None, *, offsets=None):
        spacing, cutoff, switch_width = float(spacing), float(cutoff), float(switch_width)
        if not (np.isfinite(spacing) and spacing > 0):
            raise ValueError(f"lattice spacing must be positive and finite (Å), got {spacing}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff}")
        if np.isfinite(cutoff) and not 0 < switch_width <= cutoff:
            raise ValueError(f"switch_width must be in (0, cutoff] = (0, {cutoff}] Å, got {switch_width}")
        if offsets is None:
            if not np.isfinite(cutoff):
                raise ValueError("an infinite cutoff needs explicit offsets (see NeighbourSites.cell_corners)")
            offsets = _stencil(cutoff / spacing)
        offsets = np.asarray(offsets, dtype=int).reshape(-1, 3)
        if size is not None:
            if isinstance(size, bool) or int(size) != size or size < 2:
                raise ValueError(f"size must be None (infinite lattice) or an integer >= 2, got {size!r}")
            extent = int(np.max(offsets) - np.min(offsets)) + 1
            if extent > size:
                raise ValueError(
                    f"the periodic box of size={size} cells is smaller than the neighbour stencil ({extent} cells "
                    f"for cutoff {cutoff} Å, spacing {spacing} Å): a site would be seen twice; use size >= {extent}"
                )
            size = int(size)
        self.offsets = tuple(tuple(int(c) for c in o) for o in offsets)
        self.spacing, self.cutoff, self.switch_width, self.size = spacing, cutoff, switch_width, size

    @classmethod
    def cell_corners(cls, spacing, size=None):
        """The follow-up paper's option: the 8 sites at the corners of the ion's current cell."""
        corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), axis=-1).reshape(-1, 3)
        return cls(spacing, np.inf, 0.0, size, offsets=corners)

    @property
    def capacity(self):
        """``C``: number of slots (static)."""
        return len(self.offsets)

    def cells(self, position):
        """Unwrapped integer cells ``(C, 3)`` of the candidate sites for an ion at ``position (3,)``."""
        home = jnp.floor(position / self.spacing).astype(jnp.int32)
        return home + jnp.asarray(self.offsets, dtype=jnp.int32)

    def lattice_index(self, cells):
        """Cells ``(..., 3)`` wrapped into the periodic box (``mod L``); unchanged for an infinite lattice."""
        return cells if self.size is None else jnp.mod(cells, self.size)

    def weights(self, distance):
        """Switch ``s(r)`` for site distances ``(...)``; ones for the 8-corner option."""
        if not np.isfinite(self.cutoff):
            return jnp.ones_like(distance)
        return smooth_switch(distance, self.cutoff - self.switch_width, self.cutoff)

    def count_within(self, position):
        """Number of sites strictly inside the cut-off (a diagnostic; never above ``capacity``)."""
        separations = self.spacing * self.cells(position) - position
        return jnp.sum(jnp.sum(separations**2, axis=-1) < self.cutoff**2)
