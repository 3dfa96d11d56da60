"""Energy landscapes of an ion in a framework, and its migration barriers (physics.md 4, 5.2, 5.5).

Three landscapes share one interface (``energy(R)`` in meV, ``force(R) = -grad energy`` in
meV/Å, ``correction(R) = energy(R) - U(R, 0)``, ``R (3,)`` in Å anywhere in the lattice), so the
time-local dynamics can take any of them:

* :class:`RigidLandscape`: the framework held at rest, ``U(R, 0)``.
* :class:`LinearResponseLandscape`: the softened potential of section 4,

      U_lr(R) = U(R, 0) - c g^T G g,   g_n = grad_{u_n} U(R, u) at u = 0,   c = 1/2,

  with ``G`` the static Green's function between the neighbour stencil's sites (by translation
  symmetry the same matrix for every cell, so computed once). For the Yukawa it is **not
  bounded below**: near a site ``|grad phi|^2 G / 2 ~ exp(-2 r / lambda) / r^4`` outgrows
  ``phi ~ exp(-r / lambda) / r``, so ``U_lr`` turns over at a finite distance and falls to
  ``-inf`` at the site (:func:`linear_response_turnover` finds where).
* :class:`StaticRelaxation` (exact, one Newton solve per call) and its tabulated form
  :class:`RelaxedLandscape` (built by :func:`relaxed_landscape`): the Born-Oppenheimer energy of
  the framework relaxed statically with the ion held at ``R``,

      U_rel(R) = min_{u_S} [ u_S^T (G_SS)^-1 u_S / 2 + U(R, u_S) ],

  over the displacements of the sites ``S`` within ``relax_cutoff`` of the ion's cell (the rest
  of the stencil held at rest). ``G_SS`` is ``G`` restricted to ``S``; ``(G_SS)^-1`` is the Schur
  complement of the force-constant matrix, i.e. the elastic energy of the *whole* lattice
  relaxed with ``u_S`` held, so the far lattice is eliminated exactly. On a periodic box
  (``model.size = L``) ``G`` is the pseudo-inverse without the rigid translations, and the
  same formula is the elastic energy of the box with its centre of mass held fixed.

Migration barriers (:func:`migration_barrier`, :func:`migration_barriers`) are the energy at
the face centre ``(a/2, a/2, 0)`` (the saddle) minus that at the cell centre ``(a/2, a/2, a/2)``
(the minimum), with the Hessian's eigenvalues at both to check that they are what they are said
to be. The module uses the pair-sum form of ``model.interaction``: each site's term depends on
its own displacement only, so the Hessian of ``U`` in the displacements is block diagonal.

Measured for ``follow_up_model(u0)`` (u0 = 4000 / 8000 meV Å; relax_cutoff 4.5 Å, the same to
1e-3 meV with every stencil site relaxed): barriers rigid 45.54 / 91.08, relaxed 42.36 / 79.30,
linear response 42.07 / 77.19 meV. ``U_lr`` turns over 1.49 / 1.72 Å from a site on the body
diagonal, only 54.4 / 48.0 meV above its minimum (a first-order saddle; the rigid energy there
is 114 / 110 meV above its minimum): at k_B T = 10-50 meV an ion in ``U_lr`` falls into a site.
The tabulated landscape (n = 16) is within 0.02 / 0.1 / 0.2 meV of the direct relaxation where
the rigid energy is within 100 / 200 / 300 meV of its minimum.
"""

import abc
import itertools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from .model import IonInFramework
from .neighbours import NeighbourSites


def _require_model(model):
    if not isinstance(model, IonInFramework):
        raise ValueError(f"model must be an IonInFramework (e.g. follow_up_model(4000.0)), got {type(model).__name__}")


def _require_position(position):
    position = jnp.asarray(position, dtype=float)
    if position.shape != (3,):
        raise ValueError(f"position must have shape (3,) (Å), got {position.shape}")
    return position


def _flat_green(model, offsets):
    """``G`` between the sites ``c + offsets`` as a ``(3S, 3S)`` matrix (site-major), Å^2/meV.

    The infinite lattice's for ``model.size = None``, the periodic box's otherwise."""
    green = model.lattice.green_function(np.asarray(offsets, dtype=int), size=model.size)
    count = green.shape[0]
    green = jnp.transpose(green, (0, 2, 1, 3)).reshape(3 * count, 3 * count)
    return 0.5 * (green + green.T)


def _site_hessians(model, position, displacements):
    """Diagonal blocks ``d^2 U / du_n du_n (C, 3, 3)`` of the interaction's Hessian in the site
    displacements ``(C, 3)``: three Hessian-vector products with every site moved along one axis,
    exact because ``U`` is a sum of one term per site (the off-diagonal blocks vanish)."""
    gradient = jax.grad(lambda u: model.interaction(position, u))
    columns = [
        jax.jvp(gradient, (displacements,), (jnp.zeros_like(displacements).at[:, axis].set(1.0),))[1]
        for axis in range(3)
    ]
    return jnp.stack(columns, axis=-1)


class AbstractLandscape(eqx.Module):
    """Interface: the potential energy surface an ion moves in (meV, Å).

    Subclasses define :meth:`energy`; :meth:`force`, :meth:`hessian` and :meth:`correction`
    follow from it.
    """

    model: eqx.AbstractVar[IonInFramework]

    @abc.abstractmethod
    def energy(self, position):
        """Energy in meV of the ion at ``position (3,)`` Å (anywhere in the lattice)."""

    def force(self, position):
        """``-grad energy`` in meV/Å, ``(3,)``."""
        return -jax.grad(self.energy)(position)

    def hessian(self, position):
        """Hessian of :meth:`energy` in meV/Å^2, ``(3, 3)``."""
        return jax.hessian(self.energy)(position)

    def correction(self, position):
        """``energy(R) - U(R, 0)``: what the framework's response adds to the rigid landscape, meV."""
        return self.energy(position) - self.model.rigid_energy(position)


class RigidLandscape(AbstractLandscape):
    """The framework held at rest: ``U(R, 0) = model.rigid_energy(R)``."""

    model: IonInFramework

    def __check_init__(self):
        _require_model(self.model)

    def energy(self, position):
        return self.model.rigid_energy(position)

    def correction(self, position):
        return jnp.zeros(())


class LinearResponseLandscape(AbstractLandscape):
    """The linear-response softened potential (physics.md Eq. 26, section 4):

        U_lr(R) = U(R, 0) - c g(R)^T G g(R),   g = grad_u U(R, u) at u = 0, stacked (3C,)

    over the model's whole neighbour stencil (the smooth cut-off's weights enter through the
    derivative of ``model.interaction``). ``c = 1/2`` is the Born-Oppenheimer value (the
    follow-up's code uses 1). Not bounded below for the Yukawa (see the module docstring). ``G``
    is computed at construction: build the landscape inside the function you differentiate to
    follow the lattice's parameters.

    Attributes:
        model: the ion in its framework.
        green: ``G (3C, 3C)`` in Å^2/meV between the stencil sites (site-major), computed once.
        softening: ``c``.
    """

    model: IonInFramework
    green: jax.Array
    softening: jax.Array

    def __init__(self, model, softening=0.5):
        _require_model(model)
        self.model = model
        self.green = _flat_green(model, model.neighbours.offsets)
        self.softening = jnp.asarray(softening, dtype=float)

    def site_gradient(self, position):
        """``g_n = grad_{u_n} U(R, u)`` at ``u = 0``: ``(C, 3)`` in meV/Å (minus the force on each site)."""
        zeros = jnp.zeros((self.model.neighbours.capacity, 3))
        return jax.grad(lambda u: self.model.interaction(position, u))(zeros)

    def correction(self, position):
        gradient = self.site_gradient(position).reshape(-1)
        return -self.softening * gradient @ self.green @ gradient

    def energy(self, position):
        return self.model.rigid_energy(position) + self.correction(position)


class Turnover(NamedTuple):
    """Where the linear-response landscape turns over on the way into a site.

    Attributes:
        distance: from the site, Å: closer than this ``U_lr`` *decreases* towards the site.
        position: ``(3,)`` Å, the turnover point.
        energy: ``U_lr`` there minus ``U_lr`` at the cell centre, meV (the height of the
            barrier guarding the collapse; past it ``U_lr -> -inf``).
        rigid_energy: ``U(R, 0)`` there minus at the cell centre, meV.
        curvatures: eigenvalues of the Hessian of ``U_lr`` there, meV/Å^2 (one negative: a saddle).
    """

    distance: jax.Array
    position: jax.Array
    energy: jax.Array
    rigid_energy: jax.Array
    curvatures: jax.Array


def linear_response_turnover(landscape, direction=(1.0, 1.0, 1.0), *, inner=0.2, samples=64, newton_steps=8):
    """Find the maximum of ``U_lr`` on the ray from the site at the origin towards ``direction``.

    The ray runs from ``inner`` Å to the cell centre's distance ``a sqrt(3) / 2`` (the body
    diagonal, the default, passes through the minimum); the maximum is located on ``samples``
    points and refined by Newton steps on ``dU/dr``. On a symmetry axis (the body diagonal) the
    point is a stationary point of the 3D landscape, and its Hessian (``curvatures``) tells
    whether it is the saddle guarding the collapse.

    Args:
        landscape: a :class:`LinearResponseLandscape` (any landscape works; a bounded one
            simply returns the maximum along the ray).
        direction: ``(3,)`` direction of the ray, components positive (so the ray stays in the
            cell of the origin's positive octant).

    Returns:
        :class:`Turnover`.
    """
    direction = np.asarray(direction, dtype=float)
    if direction.shape != (3,) or np.any(direction <= 0):
        raise ValueError(f"direction must be 3 positive components (into the cell), got {direction}")
    unit = tuple(float(c) for c in direction / np.linalg.norm(direction))
    distance, position, rigid_energy = _ray_maximum(landscape, unit, float(inner), int(samples), int(newton_steps))
    centre = 0.5 * landscape.model.lattice.spacing * jnp.ones(3)
    energies, curvatures = _energies_and_curvatures(landscape, jnp.stack([centre, position]))
    return Turnover(distance, position, energies[1] - energies[0], rigid_energy, curvatures[1])


@eqx.filter_jit
def _ray_maximum(landscape, unit, inner, samples, newton_steps):
    """Maximum of the energy on the ray ``r unit``: distance, position and the rigid energy there
    relative to the cell centre."""
    unit = jnp.asarray(unit)
    spacing = landscape.model.lattice.spacing
    reach = 0.5 * spacing * jnp.sqrt(3.0)
    along = lambda r: landscape.energy(r * unit)
    radii = jnp.linspace(inner, reach, samples)
    start = radii[jnp.argmax(jax.vmap(along)(radii))]
    slope, curvature = jax.grad(along), jax.grad(jax.grad(along))

    def newton(_, r):
        return jnp.clip(r - slope(r) / curvature(r), inner, reach)

    distance = jax.lax.fori_loop(0, newton_steps, newton, start)
    position = distance * unit
    rigid = landscape.model.rigid_energy
    return distance, position, rigid(position) - rigid(0.5 * spacing * jnp.ones(3))


@eqx.filter_jit
def _energies_and_curvatures(landscape, points):
    """Energies ``(P,)`` and Hessian eigenvalues ``(P, 3)`` (ascending) at ``points (P, 3)``."""
    energies = jax.vmap(landscape.energy)(points)
    return energies, jnp.linalg.eigvalsh(jax.vmap(landscape.hessian)(points))


class RelaxationResult(NamedTuple):
    """One static relaxation.

    Attributes:
        displacements: ``(S, 3)`` Å, the relaxed sites' displacements (aligned with
            :attr:`StaticRelaxation.offsets` relative to the ion's cell).
        energy: the relaxed energy ``U_rel(R)`` in meV (elastic plus interaction).
        residual: ``max |grad|`` of the minimised energy at the solution, meV/Å.
        steps: Newton steps taken.
    """

    displacements: jax.Array
    energy: jax.Array
    residual: jax.Array
    steps: jax.Array


class StaticRelaxation(AbstractLandscape):
    """The exact relaxed landscape: one damped-Newton minimisation per evaluation.

        U_rel(R) = min_{u_S} E(R, u_S),   E = u_S^T (G_SS)^-1 u_S / 2 + U(R, u_S)

    ``U`` is the model's full interaction (every stencil site; the sites outside ``S`` stay at
    rest). Newton from ``u = 0``: the Hessian ``(G_SS)^-1 + blockdiag(d^2 U / du_n^2)`` (the
    interaction's blocks by forward-over-reverse differentiation), used as it is when its
    Cholesky factorisation succeeds and otherwise shifted by an amount that makes it provably
    positive definite (Weyl's bound from the stiffness's smallest eigenvalue and Gershgorin bounds
    of the blocks), then the largest step ``2^-k`` (``k < 8``) meeting the Armijo condition. Stops when
    ``max |grad| <= tolerance`` or the step is below ``step_tolerance``, or after ``max_steps``
    (when the predicted decrease is below the energy's rounding the full Newton step is taken).

    The derivatives of ``U_rel`` (force, Hessian, and with respect to the model's parameters)
    come from the implicit function theorem, ``du* = -H^-1 d(grad_u E)``, not from
    differentiating the iterations. The stiffness is computed at construction: build the
    relaxation inside the function you differentiate to follow the lattice's parameters.

    Attributes:
        model: the ion in its framework.
        stiffness: ``(G_SS)^-1``, ``(3S, 3S)`` in meV/Å^2.
        stiffness_floor: its smallest eigenvalue.
        offsets: static ``(S, 3)`` cell offsets of the relaxed sites (relative to the ion's cell).
        sites: static indices of those sites in the model's stencil.
        relax_cutoff: Å (``inf`` when every stencil site relaxes).
        max_steps, tolerance (meV/Å), step_tolerance (Å): the Newton loop's controls.
    """

    model: IonInFramework
    stiffness: jax.Array
    stiffness_floor: jax.Array
    offsets: tuple = eqx.field(static=True)
    sites: tuple = eqx.field(static=True)
    relax_cutoff: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    step_tolerance: float = eqx.field(static=True)

    def __init__(self, model, relax_cutoff=4.5, *, max_steps=60, tolerance=1e-9, step_tolerance=1e-11):
        """``relax_cutoff`` (Å): relax every site within this distance of any point of the ion's
        cell (those of the model's stencil); ``None`` relaxes every stencil site."""
        _require_model(model)
        stencil = [tuple(o) for o in model.neighbours.offsets]
        if relax_cutoff is None:
            chosen, relax_cutoff = stencil, float("inf")
        else:
            relax_cutoff = float(relax_cutoff)
            if not relax_cutoff > 0:
                raise ValueError(f"relax_cutoff must be positive (Å) or None, got {relax_cutoff}")
            near = NeighbourSites(model.neighbours.spacing, relax_cutoff, relax_cutoff).offsets
            chosen = [o for o in near if o in stencil]
        if not chosen:
            raise ValueError(f"no stencil site lies within relax_cutoff = {relax_cutoff} Å of the ion's cell")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps}")
        self.model = model
        self.offsets = tuple(chosen)
        self.sites = tuple(stencil.index(o) for o in chosen)
        self.relax_cutoff = relax_cutoff
        stiffness = jnp.linalg.inv(_flat_green(model, chosen))
        self.stiffness = 0.5 * (stiffness + stiffness.T)
        self.stiffness_floor = jax.lax.stop_gradient(jnp.linalg.eigvalsh(self.stiffness)[0])
        self.max_steps, self.tolerance, self.step_tolerance = int(max_steps), float(tolerance), float(step_tolerance)

    @property
    def count(self):
        """``S``: number of relaxed sites (static)."""
        return len(self.offsets)

    def _embed(self, displacements):
        """``(S, 3)`` relaxed-site displacements -> ``(C, 3)`` over the model's stencil (rest zero)."""
        full = jnp.zeros((self.model.neighbours.capacity, 3), dtype=displacements.dtype)
        return full.at[np.asarray(self.sites)].set(displacements)

    def total_energy(self, position, displacements):
        """``E(R, u_S) = u_S^T (G_SS)^-1 u_S / 2 + U(R, u_S)`` in meV for ``displacements (S, 3)`` Å."""
        flat = displacements.reshape(-1)
        return 0.5 * flat @ self.stiffness @ flat + self.model.interaction(position, self._embed(displacements))

    def _gradient(self, position, displacements):
        return jax.grad(self.total_energy, argnums=1)(position, displacements)

    def newton_hessian(self, position, displacements):
        """``d^2 E / du_S^2``, ``(3S, 3S)`` in meV/Å^2: the stiffness plus the interaction's blocks."""
        blocks = _site_hessians(self.model, position, self._embed(displacements))[np.asarray(self.sites)]
        diagonal = blocks[:, :, None, :] * jnp.eye(self.count)[:, None, :, None]
        return self.stiffness + diagonal.reshape(3 * self.count, 3 * self.count), blocks

    def solve(self, position):
        """Relax the framework around an ion held at ``position (3,)`` Å; see :class:`RelaxationResult`.

        Not differentiable itself (a ``while_loop``); :meth:`energy` and :meth:`displacements` are."""
        position = _require_position(position)
        trials = 0.5 ** jnp.arange(8.0)
        energy = lambda u: self.total_energy(position, u)

        def condition(state):
            step, _, _, residual, moved = state
            return (step < self.max_steps) & (residual > self.tolerance) & (moved > self.step_tolerance)

        def body(state):
            step, u, gradient, _, _ = state
            hessian, blocks = self.newton_hessian(position, u)
            radius = jnp.sum(jnp.abs(blocks), axis=-1) - jnp.abs(jnp.diagonal(blocks, axis1=-2, axis2=-1))
            lowest = jnp.min(jnp.diagonal(blocks, axis1=-2, axis2=-1) - radius)
            floor = self.stiffness_floor + jnp.minimum(lowest, 0.0)
            definite = jnp.all(jnp.isfinite(jnp.linalg.cholesky(hessian)))
            shift = jnp.where(definite, 0.0, jnp.maximum(0.0, 0.1 * self.stiffness_floor - floor))
            flat_gradient = gradient.reshape(-1)
            direction = -jnp.linalg.solve(hessian + shift * jnp.eye(hessian.shape[0]), flat_gradient)
            direction = direction.reshape(u.shape)
            current = energy(u)
            values = jax.vmap(lambda t: energy(u + t * direction))(trials)
            armijo = values <= current + 1e-4 * trials * (flat_gradient @ direction.reshape(-1))
            best = jnp.argmin(values)
            scale = jnp.where(
                jnp.any(armijo), trials[jnp.argmax(armijo)], jnp.where(values[best] < current, trials[best], 0.0)
            )
            # a predicted decrease below the energy's rounding: the full Newton step
            resolved = -(flat_gradient @ direction.reshape(-1)) > 1e-13 * (jnp.abs(current) + 1.0)
            scale = jnp.where(resolved, scale, 1.0)
            u = u + scale * direction
            gradient = self._gradient(position, u)
            return step + 1, u, gradient, jnp.max(jnp.abs(gradient)), scale * jnp.max(jnp.abs(direction))

        u0 = jnp.zeros((self.count, 3))
        g0 = self._gradient(position, u0)
        state = (jnp.asarray(0), u0, g0, jnp.max(jnp.abs(g0)), jnp.asarray(jnp.inf))
        steps, u, _, residual, _ = jax.lax.while_loop(condition, body, state)
        return RelaxationResult(u, energy(u), residual, steps)

    def tabulate(self, grid=16, *, scale=30.0, limit=1000.0, symmetric=None):
        """Tabulate the correction ``U_rel - U(R, 0)`` over one cell: a :class:`RelaxedLandscape`.

        Args:
            grid: nodes per axis ``n`` (``>= 4``) of the grid ``a (i, j, k) / n``; an even ``n``
                puts the cell centre and the face centres on nodes (the site is a node).
            scale: ``E0`` (meV) of the logarithmic variable that is splined (see
                :class:`RelaxedLandscape`).
            limit: ``X`` (meV): the correction saturates smoothly at ``-X`` where it would be
                deeper (next to the sites, where it tends to ``-U(R, 0) -> -inf``).
            symmetric: relax one node per orbit of the cubic point group about the site (``n =
                16``: 165 relaxations instead of 4096); ``None`` decides with :func:`is_cubic`.
        """
        return _tabulated(self, grid, scale, limit, symmetric)

    def displacements(self, position):
        """Relaxed displacements ``u_S*(R) (S, 3)`` Å, differentiable (implicit function theorem)."""
        position = _require_position(position)
        return _implicit(self, position, jax.lax.stop_gradient(self.solve(position).displacements))

    def energy(self, position):
        position = _require_position(position)
        return self.total_energy(position, self.displacements(position))

    def force(self, position):
        """``-dE/dR`` at the relaxed displacements (the envelope theorem: ``dE/du = 0`` there)."""
        position = _require_position(position)
        return -jax.grad(self.total_energy)(position, self.displacements(position))

    def hessian(self, position):
        """``E_RR + E_Ru du*/dR``, the forward derivative of :meth:`force` (``du*/dR`` implicit)."""
        return -jax.jacfwd(self.force)(_require_position(position))


@eqx.filter_custom_jvp
def _implicit(relaxation, position, solution):
    """``solution`` (the minimiser ``u*`` at ``position``), given the derivative of the minimiser."""
    return solution


@_implicit.def_jvp
def _implicit_jvp(primals, tangents):
    """``du* = -H^-1 [d/d(R, params) grad_u E](u*)`` (implicit function theorem)."""
    relaxation, position, solution = primals
    tangent_relaxation, tangent_position, _ = tangents
    if tangent_position is None:
        tangent_position = jnp.zeros_like(position)
    gradient = lambda rel, r: rel._gradient(r, solution)
    _, rhs = eqx.filter_jvp(gradient, (relaxation, position), (tangent_relaxation, tangent_position))
    hessian, _ = relaxation.newton_hessian(position, solution)
    return solution, -jnp.linalg.solve(hessian, rhs.reshape(-1)).reshape(solution.shape)


# --- periodic tricubic B-spline ------------------------------------------------------------------


def bspline_coefficients(values):
    """Coefficients of the periodic tricubic B-spline interpolating ``values (n1, n2, n3)``.

    The interpolant ``f(t) = sum_m c_m B(t - m)`` (``B`` the cubic B-spline, ``t`` in grid
    units, node ``m`` at ``t = m``) meets the samples when ``c`` is the samples divided, in
    Fourier space, by the symbol ``prod_axes (4 + 2 cos(2 pi k / n)) / 6`` (never zero).
    """
    values = jnp.asarray(values, dtype=float)
    if values.ndim != 3 or min(values.shape) < 4:
        raise ValueError(f"values must be a 3D periodic table with at least 4 nodes per axis, got {values.shape}")
    symbols = [(4.0 + 2.0 * jnp.cos(2.0 * jnp.pi * jnp.arange(n) / n)) / 6.0 for n in values.shape]
    symbol = symbols[0][:, None, None] * symbols[1][None, :, None] * symbols[2][None, None, :]
    return jnp.fft.ifftn(jnp.fft.fftn(values) / symbol).real


def _bspline_weights(fraction):
    """Cubic B-spline weights of the nodes ``i-1, i, i+1, i+2`` for ``t = i + fraction``, ``(..., 4)``."""
    f = fraction
    return jnp.stack(
        [(1.0 - f) ** 3, 3.0 * f**3 - 6.0 * f**2 + 4.0, -3.0 * f**3 + 3.0 * f**2 + 3.0 * f + 1.0, f**3], axis=-1
    ) / 6.0


def bspline_value(coefficients, point):
    """Periodic tricubic B-spline at ``point (3,)`` in grid units (node ``m`` at ``point = m``).

    C2, exact at the nodes, from the ``4 x 4 x 4`` neighbouring coefficients; differentiable."""
    shape = jnp.asarray(coefficients.shape)
    base = jnp.floor(point)
    weights = _bspline_weights(point - base)
    index = jnp.mod(base.astype(jnp.int32)[:, None] + jnp.arange(-1, 3)[None, :], shape[:, None])
    block = coefficients[index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]]
    return jnp.einsum("i,j,k,ijk->", weights[0], weights[1], weights[2], block)


# --- tabulated relaxed landscape -----------------------------------------------------------------


def _cubic_orbits(grid):
    """Nodes ``(i, j, k)`` of an ``n^3`` grid over the cell grouped by the cubic point group about
    the site at the origin: ``(unique (U, 3), inverse (n^3,))`` with ``node = unique[inverse]``."""
    index = np.arange(grid)
    folded = np.minimum(index, (grid - index) % grid)
    nodes = np.stack(np.meshgrid(folded, folded, folded, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.unique(np.sort(nodes, axis=1), axis=0, return_inverse=True)


def _cubic_operations():
    """The 48 signed permutation matrices of the cubic point group."""
    operations = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), permutation] = signs
            operations.append(matrix)
    return np.array(operations)


def is_cubic(model, *, rtol=1e-10):
    """Whether the model has the full cubic symmetry about a site, so that the relaxation
    correction has it too: the stencil maps onto itself under the 48 operations ``P`` about the
    cell centre, and ``D(Pq) = P D(q) P^T``, ``phi(P r) = phi(r)`` at a few random points."""
    operations = _cubic_operations()
    doubled = 2 * np.array(model.neighbours.offsets) - 1  # about the cell centre, in half cells
    stencil = {tuple(o) for o in doubled}
    images = np.rint(np.einsum("pij,sj->psi", operations, doubled)).astype(int)
    if any(tuple(o) not in stencil for o in images.reshape(-1, 3)):
        return False
    rotated_d, expected_d, rotated_phi, phi = (np.asarray(a) for a in _symmetry_images(model, jnp.asarray(operations)))
    return bool(
        np.all(np.abs(rotated_d - expected_d) <= rtol * np.max(np.abs(expected_d)))
        and np.all(np.abs(rotated_phi - phi) <= rtol * np.max(np.abs(phi)))
    )


@eqx.filter_jit
def _symmetry_images(model, operations):
    """``D(Pq)``, ``P D(q) P^T``, ``phi(P r)`` and ``phi(r)`` at 4 fixed pseudo-random ``q``, ``r``."""
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.uniform(-np.pi, np.pi, (4, 3)))
    r = jnp.asarray(rng.uniform(0.2, 0.7, (4, 3))) * model.lattice.spacing
    d = model.lattice.dynamical_matrix(q)
    rotated_d = model.lattice.dynamical_matrix(jnp.einsum("pij,sj->psi", operations, q))
    expected_d = jnp.einsum("pij,sjk,plk->psil", operations, d, operations)
    rotated_phi = model.potential(jnp.einsum("pij,sj->psi", operations, r))
    return rotated_d, expected_d, rotated_phi, jnp.broadcast_to(model.potential(r), rotated_phi.shape)


class RelaxedLandscape(AbstractLandscape):
    """The relaxed landscape for dynamics: the exact rigid energy plus a tabulated correction.

        energy(R) = U(R, 0) + Delta(R),   Delta = -E0 expm1(s(R)),
        s = spline of sat(log(1 + |U_rel - U(R, 0)| / E0))   (U_rel - U is never positive)

    Built by :func:`relaxed_landscape` or :meth:`StaticRelaxation.tabulate`.

    The correction is periodic with the cell; the variable ``s`` is sampled on an ``n^3`` grid
    of nodes ``a (i, j, k) / n`` and interpolated by a periodic tricubic B-spline (C2), so
    ``Delta`` is exact at the nodes (up to the saturation) and C2. The logarithm turns the
    correction's exponential growth towards the sites (it tends to ``-U(R, 0)``, infinite at a
    site for the Yukawa) into a gentle slope the spline follows; ``sat(s) = -w log(exp(-s/w) +
    exp(-s_max/w))`` (``w = 1/8``, ``s_max = log(1 + X/E0)``) caps it smoothly, so
    ``-X <~ Delta <= 0`` everywhere: near the sites, where the ion never goes, the landscape is
    the rigid one minus at most ``X``, bounded below and never below the relaxed energy there
    by more than the interpolation error. Where ``|Delta| << X`` the saturation changes it by
    ``(E0 + |Delta|) ((E0 + |Delta|) / (E0 + X))^8 / 8``: with the defaults ``E0 = 30``, ``X =
    1000`` meV, 1e-11 meV at the minimum of the model system and 1e-5 meV at ``|Delta| = 130``
    meV (the edge of the region the ion visits, 300 meV above the minimum).
    ``X`` also bounds how far ``Delta`` reaches below zero when it is used as a softening added
    to the interaction with *displaced* sites (the coloured-noise description).

    Attributes:
        model: the ion in its framework.
        coefficients: ``(n, n, n)`` spline coefficients of ``s``.
        table: ``(n, n, n)`` the (saturated) correction ``Delta`` at the nodes, meV.
        residual: the largest Newton residual (meV/Å) over the relaxed nodes.
        relax_cutoff: Å, as for :class:`StaticRelaxation`.
        scale: ``E0`` in meV.
        limit: ``X`` in meV.
    """

    model: IonInFramework
    coefficients: jax.Array
    table: jax.Array
    residual: jax.Array
    relax_cutoff: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    limit: float = eqx.field(static=True)

    @property
    def grid(self):
        """``n``: nodes per axis (static)."""
        return self.coefficients.shape[0]

    def correction(self, position):
        point = position * (self.grid / self.model.lattice.spacing)
        return -self.scale * jnp.expm1(bspline_value(self.coefficients, point))

    def energy(self, position):
        return self.model.rigid_energy(position) + self.correction(position)


_SATURATION_WIDTH = 0.125


def relaxed_landscape(model, grid=16, relax_cutoff=4.5, *, scale=30.0, limit=1000.0, symmetric=None, max_steps=60,
                      tolerance=1e-9):
    """Tabulate the relaxation correction ``U_rel - U(R, 0)`` over one cell: :class:`RelaxedLandscape`.

    ``StaticRelaxation(model, relax_cutoff, max_steps=..., tolerance=...).tabulate(grid,
    scale=..., limit=..., symmetric=...)``; see :meth:`StaticRelaxation.tabulate`.
    """
    _require_model(model)
    _check_table(grid, scale, limit)
    relaxation = StaticRelaxation(model, relax_cutoff, max_steps=max_steps, tolerance=tolerance)
    return relaxation.tabulate(grid, scale=scale, limit=limit, symmetric=symmetric)


def _check_table(grid, scale, limit):
    if isinstance(grid, bool) or int(grid) != grid or grid < 4:
        raise ValueError(f"grid must be an integer >= 4, got {grid!r}")
    if not 0 < float(scale) < float(limit):
        raise ValueError(f"need 0 < scale < limit (meV), got scale={scale}, limit={limit}")


def _tabulated(relaxation, grid, scale, limit, symmetric):
    """:meth:`StaticRelaxation.tabulate`."""
    _check_table(grid, scale, limit)
    grid, scale, limit = int(grid), float(scale), float(limit)
    model = relaxation.model
    if symmetric is None:
        if not _checks.is_concrete(model):
            raise ValueError("inside jit/grad/vmap pass symmetric=True or False (is_cubic needs concrete values)")
        symmetric = is_cubic(model)
    if symmetric:
        unique, inverse = _cubic_orbits(grid)
    else:
        index = np.arange(grid)
        unique = np.stack(np.meshgrid(index, index, index, indexing="ij"), axis=-1).reshape(-1, 3)
        inverse = np.arange(grid**3)
    positions = model.lattice.spacing * jnp.asarray(unique, dtype=float) / grid
    variable, residual = _tabulate(relaxation, positions, scale, limit)
    if _checks.is_concrete(residual) and not np.isfinite(float(residual)):
        raise ValueError("the relaxation failed (non-finite energy) at a node where the rigid energy is finite")
    shape = (grid, grid, grid)
    variable = variable[inverse].reshape(shape)
    return RelaxedLandscape(
        model=model,
        coefficients=bspline_coefficients(variable),
        table=-scale * jnp.expm1(variable),
        residual=residual,
        relax_cutoff=relaxation.relax_cutoff,
        scale=scale,
        limit=limit,
    )


@eqx.filter_jit
def _tabulate(relaxation, positions, scale, limit):
    """The saturated variable ``sat(log(1 + |U_rel - U| / E0)) (P,)`` at node positions ``(P, 3)``
    and the largest Newton residual (``inf`` if a relaxation failed where the rigid energy is
    finite). A node where the rigid energy is infinite (a site, for the Yukawa) is saturated
    (``s = s_max``) and relaxed at the cell centre instead."""
    model = relaxation.model
    spacing = model.lattice.spacing
    finite = jnp.isfinite(jax.vmap(model.rigid_energy)(jax.lax.stop_gradient(positions)))
    centre = 0.5 * spacing * jnp.ones(3)
    positions = jnp.where(finite[:, None], positions, centre)  # no infinity enters a derivative
    # a node on a site (finite there, e.g. a Gaussian): moved by 1e-6 Å, because the model's
    # distance |r| has a NaN gradient at r = 0 (the value changes by O(1e-12) meV)
    on_site = jnp.all(jnp.abs(positions - spacing * jnp.round(positions / spacing)) < 1e-12, axis=-1)
    positions = positions + jnp.where(on_site[:, None], 1e-6, 0.0)
    rigid = jax.vmap(model.rigid_energy)(positions)
    results = jax.vmap(relaxation.solve)(positions)
    # the energy again through the implicit-function derivative: the table is differentiable in
    # the model's parameters
    implicit = jax.vmap(lambda r, u: _implicit(relaxation, r, u))
    solutions = implicit(positions, jax.lax.stop_gradient(results.displacements))
    energies = jax.vmap(relaxation.total_energy)(positions, solutions)
    correction = energies - rigid
    usable = finite & jnp.isfinite(correction)
    variable = jnp.where(usable, jnp.log1p(jnp.maximum(-correction, 0.0) / scale), jnp.inf)
    ceiling = np.log1p(limit / scale)
    saturated = -_SATURATION_WIDTH * jnp.logaddexp(-variable / _SATURATION_WIDTH, -ceiling / _SATURATION_WIDTH)
    residual = jnp.max(jnp.where(usable, results.residual, 0.0))
    return saturated, jnp.where(jnp.any(finite & ~usable), jnp.inf, residual)


# --- migration barriers --------------------------------------------------------------------------


class Barrier(NamedTuple):
    """A migration barrier: face centre (saddle) minus cell centre (minimum).

    Attributes:
        barrier: ``energy(saddle) - energy(minimum)``, meV.
        minimum_energy, saddle_energy: meV.
        minimum_curvatures, saddle_curvatures: ``(3,)`` Hessian eigenvalues (ascending), meV/Å^2.
        is_minimum: all curvatures at the cell centre positive.
        is_saddle: exactly one negative curvature at the face centre.
    """

    barrier: jax.Array
    minimum_energy: jax.Array
    saddle_energy: jax.Array
    minimum_curvatures: jax.Array
    saddle_curvatures: jax.Array
    is_minimum: jax.Array
    is_saddle: jax.Array


def migration_barrier(landscape):
    """The barrier of any landscape between the cell centre ``(a/2)(1, 1, 1)`` and the face
    centre ``(a/2, a/2, 0)``, with the Hessian's eigenvalues at both."""
    points = 0.5 * landscape.model.lattice.spacing * jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    energies, curvatures = _energies_and_curvatures(landscape, points)
    return Barrier(
        barrier=energies[1] - energies[0],
        minimum_energy=energies[0],
        saddle_energy=energies[1],
        minimum_curvatures=curvatures[0],
        saddle_curvatures=curvatures[1],
        is_minimum=jnp.all(curvatures[0] > 0),
        is_saddle=jnp.sum(curvatures[1] < 0) == 1,
    )


def migration_barriers(model, *, relax_cutoff=4.5, softening=0.5):
    """Migration barriers of physics.md 5.5: ``{"rigid", "relaxed", "linear_response"}`` ->
    :class:`Barrier`, the relaxed one by direct relaxation (:class:`StaticRelaxation`)."""
    _require_model(model)
    return {
        "rigid": migration_barrier(RigidLandscape(model)),
        "relaxed": migration_barrier(StaticRelaxation(model, relax_cutoff)),
        "linear_response": migration_barrier(LinearResponseLandscape(model, softening)),
    }
