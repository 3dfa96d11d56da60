"""Harmonic frameworks: one mass per cell, bonds with longitudinal and transverse springs.

A bond to the neighbour at cell offset ``b`` (unit vector ``u``) has the force-constant tensor
``Phi_b = k_long u u^T + k_trans (1 - u u^T)``; an optional on-site confinement ``kappa`` acts per
Cartesian axis. The dynamical matrix (physics.md section 2), with ``q`` in lattice units, is

    D(q) = [diag(kappa) + sum_{b in half set} 2 Phi_b (1 - cos q.b)] / mass,

and its long-wavelength limit ``D(q) ~ |q|^2 S(n)`` has ``S(n) = sum_b Phi_b (n.b)^2 / mass``.
Masses are in units of the framework mass ``m`` (so ``mass = 1`` is the paper's framework),
springs in units of ``K``; lengths (``spacing``) in the oscillator length ``l``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from ._linalg import inverse_3x3, symmetric_power
from .brillouin import periodic_grid, pyramid_rule, sphere_rule


def _broadcast(name, value, shape):
    """``value`` as a float array broadcast to ``shape``, or ``ValueError`` naming ``name``."""
    array = jnp.asarray(value, dtype=float)
    try:
        return jnp.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or have shape {shape}, got shape {array.shape}") from None


class Lattice(eqx.Module):
    """A Bravais framework of identical masses joined by springs.

    Attributes:
        offsets: static tuple of ``B`` integer cell offsets (each of length ``dim``), one per
            bond pair (``-b`` is implied).
        directions: static tuple of ``B`` Cartesian unit vectors of the bonds.
        k_long: ``(B,)`` spring along each bond.
        k_trans: ``(B,)`` spring against displacements transverse to each bond.
        confinement: ``(3,)`` on-site spring ``kappa`` per Cartesian axis.
        spacing: lattice constant ``alpha`` (in units of ``l``).
        mass: framework mass in units of ``m``.
        dim: 1 (a chain along z) or 3 (cells indexed by three integers).
    """

    offsets: tuple = eqx.field(static=True)
    directions: tuple = eqx.field(static=True)
    k_long: jax.Array
    k_trans: jax.Array
    confinement: jax.Array
    spacing: jax.Array
    mass: jax.Array
    dim: int = eqx.field(static=True)

    def __init__(self, offsets, k_long, k_trans=None, confinement=0.0, spacing=1.0, mass=1.0, directions=None):
        offsets = tuple(tuple(int(c) for c in b) for b in offsets)
        dims = {len(b) for b in offsets}
        if len(dims) != 1 or dims.pop() not in (1, 3):
            raise ValueError(f"bond offsets must all have length 1 (chain) or 3 (cubic cells), got {offsets}")
        self.dim = len(offsets[0])
        if directions is None:
            cartesian = np.array([self._embed(b) for b in offsets], dtype=float)
            norms = np.linalg.norm(cartesian, axis=1, keepdims=True)
            if np.any(norms == 0):
                raise ValueError("bond offsets must be non-zero")
            directions = cartesian / norms
        directions = np.asarray(directions, dtype=float)
        if directions.shape != (len(offsets), 3) or not np.allclose(np.linalg.norm(directions, axis=1), 1.0):
            raise ValueError(f"directions must be {len(offsets)} Cartesian unit vectors (one per bond), got {directions}")
        self.offsets = offsets
        self.directions = tuple(tuple(float(c) for c in u) for u in directions)
        self.k_long = _broadcast("k_long", k_long, (len(offsets),))
        self.k_trans = _broadcast("k_trans", 0.0 if k_trans is None else k_trans, (len(offsets),))
        self.confinement = _broadcast("confinement", confinement, (3,))
        self.spacing = jnp.asarray(spacing, dtype=float)
        self.mass = jnp.asarray(mass, dtype=float)

    def __check_init__(self):
        _checks.require_shape("lattice spacing", self.spacing, ())
        _checks.require_shape("framework mass", self.mass, ())
        if _checks.is_concrete(self):
            _checks.checked(self)

    def problems(self):
        """What makes the framework invalid, as traceable :func:`jaxion._checks.problem` triples:
        non-finite springs, negative confinement, non-positive spacing or mass, and springs that
        make it unstable (:meth:`stability_margin`)."""
        margin = self.stability_margin()
        return [
            _checks.finite("spring constants", jnp.concatenate([self.k_long, self.k_trans])),
            _checks.positive("confinement", self.confinement, allow_zero=True),
            _checks.positive("lattice spacing", self.spacing),
            _checks.positive("framework mass", self.mass),
            _checks.problem(
                ~(margin > 0),
                "the springs make the framework unstable: D(q) has zero or negative eigenvalues away from "
                "Gamma; springs must make every non-uniform displacement cost energy (e.g. a simple cubic "
                "lattice needs k1 > 0 and k2 > 0); the stability margin (smallest eigenvalue) must be positive",
                margin,
            ),
        ]

    def _embed(self, cells):
        """Integer cell vectors ``(..., dim)`` -> Cartesian cell vectors ``(..., 3)`` (chain along z)."""
        cells = np.asarray(cells, dtype=float)
        if self.dim == 3:
            return cells
        zeros = np.zeros(cells.shape[:-1] + (2,))
        return np.concatenate([zeros, cells], axis=-1)

    def stability_margin(self):
        """Smallest eigenvalue of ``D(q)`` away from Gamma, minus ``1e-10`` of the largest (traceable
        scalar): positive for a stable framework.

        Checked on a periodic 8^dim mesh (Gamma excluded) and, near Gamma, through the long-wave
        tensor ``S(n)`` restricted to the unconfined axes (``D ~ diag(kappa) + q^2 S(n)``); a
        confined axis is given the largest mesh eigenvalue, which changes neither bound.
        """
        return _stability_margin(jax.lax.stop_gradient(self))

    def _wave_vectors(self, name, value):
        """``value`` as a float array whose last axis has the lattice's ``dim`` components."""
        value = jnp.asarray(value, dtype=float)
        if value.ndim == 0 or value.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (..., {self.dim}) for a {self.dim}D lattice, got {value.shape}")
        return value

    @property
    def cartesian_offsets(self):
        """``(B, 3)`` Cartesian bond vectors in cell units."""
        return self._embed(np.array(self.offsets))

    def positions(self, cells):
        """Equilibrium positions ``alpha * n`` of cells ``(..., dim)`` as ``(..., 3)`` in units of ``l``."""
        return self.spacing * jnp.asarray(self._embed(cells))

    def bond_tensors(self):
        """``(B, 3, 3)`` force-constant tensors ``k_long u u^T + k_trans (1 - u u^T)``."""
        u = jnp.asarray(self.directions)
        uu = u[:, :, None] * u[:, None, :]
        return self.k_long[:, None, None] * uu + self.k_trans[:, None, None] * (jnp.eye(3) - uu)

    def dynamical_matrix(self, q):
        """``D(q)`` for wave vectors ``q (..., dim)`` in lattice units; returns ``(..., 3, 3)``."""
        q = self._wave_vectors("q", q)
        phase = q @ jnp.asarray(np.array(self.offsets, dtype=float)).T
        springs = jnp.einsum("...b,bij->...ij", 2.0 * (1.0 - jnp.cos(phase)), self.bond_tensors())
        return (springs + jnp.diag(self.confinement)) / self.mass

    def modes(self, q):
        """Normal modes at ``q (..., dim)``: frequencies ``omega (..., 3)`` (ascending, in units of
        ``Omega``, so a mode evolves as ``exp(2 pi i omega tau)``) and polarisations
        ``(..., 3, 3)`` with the branch as the last index (columns)."""
        eigenvalues, vectors = jnp.linalg.eigh(self.dynamical_matrix(q))
        return jnp.sqrt(jnp.clip(eigenvalues, 0.0)), vectors

    def frequencies(self, q):
        """``omega (..., 3)`` at ``q (..., dim)``, ascending."""
        return jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(self.dynamical_matrix(q)), 0.0))

    def highest_frequency(self, points):
        """``omega_max`` estimated on a periodic grid: ``max_{q, u} omega_u(q)`` over the
        ``points^dim`` wave vectors of :func:`~jaxion.brillouin.periodic_grid` (the zone boundary
        included for even ``points``). A traceable scalar."""
        return jnp.max(self.frequencies(periodic_grid(points, self.dim)))

    def long_wave_tensor(self, n):
        """``S(n) = sum_b Phi_b (n.b)^2 / mass`` for unit directions ``n (..., dim)``: ``(..., 3, 3)``.

        Eigenvalues ``kappa_u(n)`` give acoustic frequencies ``omega = |q| sqrt(kappa_u)``.
        """
        projection = self._wave_vectors("n", n) @ jnp.asarray(np.array(self.offsets, dtype=float)).T
        return jnp.einsum("...b,bij->...ij", projection**2, self.bond_tensors()) / self.mass

    def sound_speeds(self, n):
        """Acoustic speeds ``v_u(n) = 2 pi alpha sqrt(kappa_u(n))`` in ``l`` per period, ``(..., 3)``.

        ``n (..., dim)`` are unit directions; for a confined (gapped) branch the value is the
        long-wavelength group velocity of the unconfined part.
        """
        kappa = jnp.linalg.eigvalsh(self.long_wave_tensor(n))
        return 2.0 * jnp.pi * self.spacing * jnp.sqrt(jnp.clip(kappa, 0.0))

    def recoil_density(self, n):
        """Integrand of the recoil matrix Eq. 23 over the unit sphere, ``(..., 3, 3)``:

            M = integral dOmega sum_u eta_u eta_u^T / (32 pi^3 kappa_u^(3/2))
              = integral dOmega S(n)^(-3/2) / (32 pi^3 mass).

        Defined for gapless 3D frameworks only (a gapped one has no low-speed drag).
        """
        if self.dim != 3:
            raise ValueError("the recoil matrix is defined for 3D frameworks; a chain has no finite low-speed drag")
        if _checks.is_concrete(self.confinement) and np.any(np.asarray(self.confinement) > 0):
            raise ValueError(
                "the recoil matrix needs a gapless framework (confinement = 0): a gapped spectrum has no "
                "low-speed drag"
            )
        return symmetric_power(self.long_wave_tensor(n), -1.5) / (32.0 * jnp.pi**3 * self.mass)

    def green_function(self, cells, size=None, n_radial=48, n_face=48):
        """Static lattice Green's function ``G_ab = (1/N) sum_q exp(i q.(n_a - n_b)) D(q)^(-1) / mass``.

        ``G`` is the inverse of the real-space force-constant matrix ``K = mass * D``: a static
        force ``f_b`` on each site ``b`` displaces site ``a`` by ``rho_a = sum_b G_ab f_b``.

        Args:
            cells: ``(S, dim)`` integer cells of the sites.
            size: ``None`` for the infinite lattice (Brillouin-zone quadrature centred on
                Gamma, ``pyramid_rule``), or ``L`` for a periodic ``L^dim`` lattice (exact mode
                sum by FFT; at Gamma the pseudo-inverse of ``diag(kappa)`` leaves out the rigid
                translations along unconfined axes).
            n_radial, n_face: quadrature orders for the infinite lattice.

        Returns:
            ``(S, S, 3, 3)``, symmetric under ``(a, i) <-> (b, j)``.

        Raises:
            ValueError: the infinite lattice's ``G`` diverges (a chain without confinement on
                some axis), bad ``cells`` or ``size``.
        """
        cells = np.asarray(cells)
        _checks.require_shape("cells", cells, (None, self.dim))
        if not np.all(cells == np.round(cells)):
            raise ValueError(f"cells must be integer cell indices, got {cells}")
        separations = (cells[:, None, :] - cells[None, :, :]).astype(int)
        if size is None:
            return self._green_infinite(separations, n_radial, n_face)
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer (cells per axis) or None, got {size}")
        return self._green_periodic(separations, int(size))

    def _green_infinite(self, separations, n_radial, n_face):
        """``G`` for ``(S, S, dim)`` cell separations by BZ quadrature; ``G(-d) = G(d)`` halves the work."""
        if self.dim == 1 and _checks.is_concrete(self.confinement) and np.any(np.asarray(self.confinement) == 0):
            raise ValueError(
                "the static Green's function of an infinite chain diverges without confinement on every "
                "axis; give the chain kappa > 0 or use a finite periodic size"
            )
        flat = separations.reshape(-1, self.dim)
        first = np.take_along_axis(flat, np.argmax(flat != 0, axis=1)[:, None], axis=1)
        unique, index = np.unique(np.where(first < 0, -flat, flat), axis=0, return_inverse=True)
        q, weights = pyramid_rule(self.dim, n_radial, n_face)
        values = _quadrature_green(self, unique.astype(float), q, weights)
        return values[index.reshape(-1)].reshape(separations.shape[:2] + (3, 3))

    def _green_periodic(self, separations, size):
        """``G`` on a periodic ``size^dim`` lattice, read from the real-space table at ``separations mod size``."""
        table = _periodic_green_table(self, size)
        wrapped = np.mod(separations, size)
        return table[tuple(wrapped[..., d] for d in range(self.dim))]

    def band_structure(self, path=None, points_per_segment=60):
        """Frequencies along a path of high-symmetry points.

        Args:
            path: sequence of ``(label, q)`` pairs; default Gamma-X-M-Gamma-R (cubic) or
                Gamma-Z (chain).
            points_per_segment: samples per segment.

        Returns:
            dict with ``distance (P,)``, ``frequencies (P, 3)``, ``ticks`` (distances of the
            labelled points) and ``labels``.
        """
        if path is None:
            pi = np.pi
            path = (
                [("Γ", (0, 0, 0)), ("X", (0, pi, 0)), ("M", (pi, pi, 0)), ("Γ", (0, 0, 0)), ("R", (pi, pi, pi))]
                if self.dim == 3
                else [("Γ", (0,)), ("Z", (pi,))]
            )
        labels = [label for label, _ in path]
        corners = np.array([q for _, q in path], dtype=float)
        segments, ticks, start = [], [0.0], 0.0
        for a, b in zip(corners[:-1], corners[1:]):
            s = np.linspace(0.0, 1.0, points_per_segment, endpoint=False)
            segments.append(a + s[:, None] * (b - a))
            start += np.linalg.norm(b - a)
            ticks.append(start)
        q = np.concatenate(segments + [corners[-1:]])
        distance = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
        return {"distance": distance, "frequencies": self.frequencies(q), "ticks": np.array(ticks), "labels": labels}

    def density_of_states(self, omega, grid=32, broadening=None):
        """Phonon density of states ``g(omega) = (1/N) sum_{q,u} delta(omega - omega_u(q))``, with
        the delta broadened into a Gaussian, on a periodic ``grid^dim`` mesh; integrates to 3.

        Args:
            omega: ``(W,)`` frequencies at which to evaluate.
            grid: mesh points per axis.
            broadening: Gaussian width; default twice the mesh's frequency spacing estimate.

        Returns:
            ``(W,)``.
        """
        frequencies = self.frequencies(periodic_grid(grid, self.dim)).reshape(-1)
        if broadening is None:
            broadening = 2.0 * jnp.max(frequencies) / grid
        omega = jnp.asarray(omega, dtype=float)
        kernel = jnp.exp(-0.5 * ((omega[:, None] - frequencies[None, :]) / broadening) ** 2)
        return jnp.sum(kernel, axis=1) / (jnp.sqrt(2.0 * jnp.pi) * broadening * grid**self.dim)


@eqx.filter_jit
def _stability_margin(lattice):
    """Body of :meth:`Lattice.stability_margin` (compiled once per lattice structure)."""
    mesh = jnp.linalg.eigvalsh(lattice.dynamical_matrix(jnp.asarray(periodic_grid(8, lattice.dim)[1:])))
    scale = jnp.max(jnp.abs(mesh))
    free = lattice.confinement == 0
    n = sphere_rule(6, 12)[0] if lattice.dim == 3 else np.ones((1, 1))
    both = free[:, None] & free[None, :]
    tensor = jnp.where(both, lattice.long_wave_tensor(jnp.asarray(n)), jnp.diag(jnp.where(free, 0.0, scale)))
    smallest = jnp.minimum(jnp.min(mesh), jnp.min(jnp.linalg.eigvalsh(tensor)))
    return smallest - 1e-10 * jnp.maximum(scale, 1e-300)


@jax.jit
def _quadrature_green(lattice, separations, q, weights):
    """``sum_p w_p cos(q_p.d) D(q_p)^-1 / mass`` for separations ``d (U, dim)``: ``(U, 3, 3)``."""
    inverse = inverse_3x3(lattice.dynamical_matrix(q))
    phases = jnp.cos(separations @ q.T)
    return jnp.einsum("up,p,pij->uij", phases, weights, inverse) / lattice.mass


@functools.partial(jax.jit, static_argnames="size")
def _periodic_green_table(lattice, size):
    """Real-space ``G(n)``, ``(size,) * dim + (3, 3)``: inverse FFT of ``D(q)^-1 / mass`` over the
    periodic mesh, with the pseudo-inverse ``diag(kappa)^+`` at Gamma (translations left out)."""
    matrices = lattice.dynamical_matrix(periodic_grid(size, lattice.dim))
    inverse = inverse_3x3(matrices.at[0].set(jnp.eye(3)))
    kappa = lattice.confinement / lattice.mass
    gamma = jnp.diag(jnp.where(kappa > 0, 1.0 / jnp.where(kappa > 0, kappa, 1.0), 0.0))
    inverse = inverse.at[0].set(gamma).reshape((size,) * lattice.dim + (3, 3))
    return jnp.fft.ifftn(inverse, axes=tuple(range(lattice.dim))).real / lattice.mass


def SimpleCubic(k1=15.0, k2=5.0, spacing=2.0, confinement=0.0, mass=1.0):
    """Simple cubic framework of the paper's Sec. IV (Eq. 19): central springs ``k1`` to the 6
    nearest and ``k2`` to the 12 next-nearest neighbours; unconfined by default."""
    nearest = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    next_nearest = [(1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)]
    springs = jnp.concatenate([jnp.full(3, jnp.asarray(k1, dtype=float)), jnp.full(6, jnp.asarray(k2, dtype=float))])
    return Lattice(nearest + next_nearest, k_long=springs, confinement=confinement, spacing=spacing, mass=mass)


def Chain(k_par=99 / 4, k_perp=99 / 4, kappa_par=1.0, kappa_perp=1.0, spacing=1.0, mass=1.0):
    """Chain of the paper's Sec. III (Eq. 12) along z, masses moving in 3D:
    ``omega_u(q)^2 = kappa_u + 4 k_u sin^2(q/2)`` with ``u`` in {x, y, z}."""
    confinement = jnp.stack([jnp.asarray(kappa_perp, dtype=float)] * 2 + [jnp.asarray(kappa_par, dtype=float)])
    return Lattice([(1,)], k_long=k_par, k_trans=k_perp, confinement=confinement, spacing=spacing, mass=mass)
