"""Energy lost by the ion in one straight pass: perturbative (Eqs. 13-14) and low-speed (Eq. 23).

Conventions (physics.md sections 1-4): the ion moves along ``z`` at constant speed ``v`` on the
line ``sigma(tau) = (x0, y0, v tau)``; ``start = (x0, y0)``. The force on interacting site ``a``
is ``F_a(tau) = -grad phi(r_a)``, ``r_a = x_a - sigma(tau)``. Writing ``z = z_a + u`` and
``d_a = (x_a - x0, y_a - y0)``, its time Fourier transform is

    Fhat_a(omega) = integral dtau F_a(tau) exp(2 pi i omega tau) = exp(i k z_a) ghat_a(k) / v,
    ghat_a(k) = integral du g_a(u) exp(i k u),   g_a(u) = -grad phi((d_a, -u)),   k = 2 pi omega / v,

a function of ``k`` alone. For the Gaussian ``phi0 exp(-r^2 / 2 lambda^2)``

    ghat_a(k) = sqrt(2 pi) lambda phi0 exp(-|d_a|^2 / 2 lambda^2) exp(-k^2 lambda^2 / 2) (d_a / lambda^2, -i k);

for any other pair potential it is tabulated once per call by the trapezoid rule in ``u``
(spectrally accurate for smooth, decaying forces) on a grid in ``k`` and interpolated by cubic
Hermite polynomials (the ``k``-derivative is tabulated too).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx

from . import _checks
from .brillouin import gauss_legendre, periodic_grid, pyramid_rule, sphere_rule
from .lattice import Lattice
from .potentials import AbstractPairPotential, Gaussian, PairSum
from .response import recoil_matrix
from .system import System

# |integrand| below exp(-_CUTOFF_EXPONENT) of its peak is dropped from the Brillouin-zone rule.
_CUTOFF_EXPONENT = 45.0
# Tabulated transforms: k-grid step (in units of 1 / range) for the Hermite interpolation.
_TABLE_K_STEP = 0.1


def drag_tensor(system, sigma):
    """Drag tensor ``H(sigma) M H(sigma)`` of the time-local equation of motion (Eq. 26).

    Args:
        system: a :class:`~jaxion.system.System` on a gapless 3D framework.
        sigma: ion positions ``(..., 3)``.

    Returns:
        ``(..., 3, 3)``.
    """
    _require_system(system)
    sigma = jnp.asarray(sigma, dtype=float)
    if sigma.ndim == 0 or sigma.shape[-1] != 3:
        raise ValueError(f"sigma must have shape (..., 3), got {sigma.shape}")
    system, sigma = _checks.enforce((system, sigma), _checks.problems_of(system) + [_checks.finite("sigma", sigma)])
    return _drag(system, recoil_matrix(system.lattice), sigma.reshape(-1, 3)).reshape(sigma.shape + (3,))


@eqx.filter_jit
def _drag(system, recoil, sigma):
    """``H M H`` at positions ``(P, 3)``: ``(P, 3, 3)``."""
    hessians = jax.vmap(system.hessian)(sigma)
    return hessians @ recoil @ hessians


def loss_low_speed(system, speed, start, n_panels=48, order=8):
    """Low-speed (time-local) loss, Eq. 23, for a straight pass along ``z``:

        Delta = integral dtau sigma'^T H M H sigma' = v integral dz [H(sigma) M H(sigma)]_zz,

    on ``sigma = (x0, y0, z)`` with ``z`` from 12 ranges before the first site plane to 12
    ranges past the last, by Gauss-Legendre panels.

    Args:
        system: a :class:`~jaxion.system.System` on a gapless 3D framework.
        speed: ``v > 0``, scalar or any array shape.
        start: ``(2,)`` transverse position ``(x0, y0)``.
        n_panels, order: panels and Gauss points per panel of the ``z`` rule.

    Returns:
        loss with the shape of ``speed``.
    """
    system, speed, start = _check_pass(system, speed, start)
    return speed * _drag_line_integral(system, recoil_matrix(system.lattice), start, n_panels, order)


@eqx.filter_jit
def _drag_line_integral(system, recoil, start, n_panels, order):
    """``integral dz [H M H]_zz`` along ``(x0, y0, z)`` (see :func:`loss_low_speed`)."""
    z_sites = system.site_positions()[:, 2]
    margin = 12.0 * system.potential.range
    lower, upper = jnp.min(z_sites) - margin, jnp.max(z_sites) + margin
    nodes, weights = gauss_legendre(order, 0.0, 1.0)
    edges = np.arange(n_panels)[:, None]
    unit_z = ((edges + nodes[None, :]) / n_panels).reshape(-1)
    unit_w = np.tile(weights, n_panels) / n_panels
    z = lower + (upper - lower) * unit_z
    sigma = jnp.concatenate([jnp.broadcast_to(start, (z.shape[0], 2)), z[:, None]], axis=1)
    drag_zz = _drag(system, recoil, sigma)[:, 2, 2]
    return (upper - lower) * jnp.sum(unit_w * drag_zz)


def loss_perturbative(
    system, speed, start, n_radial=None, n_face=16, fourier_step=0.125, fourier_window=40.0, batch_size=4, size=None
):
    """Second-order (perturbative) loss of one straight pass, Eq. 13:

        Delta = (2 pi^2 / m) <sum_u | sum_a exp(i q.n_a) eta_u(q) . Fhat_a(omega_u(q)) |^2>_q

    (``<>_q`` the Brillouin-zone average, ``m`` the framework mass, ``n_a`` the cells of the
    interacting sites). The zone average uses :func:`jaxion.brillouin.pyramid_rule` shrunk to
    the cube around Gamma outside which the integrand is below ``exp(-45)`` of its peak (see
    ``_zone_extent``), so low speeds, where only long waves are excited, stay accurate.

    With ``size = L`` the lattice is the periodic ``L^dim`` box of the full simulation and
    ``<>_q`` is its exact mode sum, ``L^-dim sum_q`` over ``q = 2 pi n / L``
    (:func:`jaxion.brillouin.periodic_grid`; the uniform translation at ``q = 0`` included): the
    energy the pass leaves in that box, to second order. By Poisson summation

        Delta_L - Delta_inf = sum_{m != 0} C(L m),   C(R) = (2 pi^2 / m) (2 pi)^-dim integral d^dim q exp(i q.R) I(q)

    (``I(q)`` the integrand above): the sites' periodic images at distance ``L`` and beyond, i.e.
    the sound that crosses the box and returns to the sites while the ion still pushes on them.

    Args:
        system: a :class:`~jaxion.system.System` (chain or 3D lattice, any sites, any potential).
        speed: ``v > 0``, scalar or any array shape (vectorised, ``batch_size`` speeds at a time).
        start: ``(2,)`` transverse position ``(x0, y0)`` of the straight path.
        n_radial: radial Gauss points of the zone rule (default 32 in 3D, 96 for a chain).
        n_face: Gauss points per face axis (3D).
        fourier_step: sample step of the force along the path, in units of the potential range
            (numerical transforms only; the largest wave number kept is ``pi / step``).
        fourier_window: half-length of the sampled path, in units of the range (numerical only).
        batch_size: speeds evaluated together (memory ~ ``batch_size`` x quadrature points).
        size: ``None`` for the infinite lattice (the zone quadrature), or ``L`` (integer >= 1):
            the periodic ``L^dim`` lattice's mode sum (``L^dim`` wave vectors; the quadrature
            orders are then unused).

    Returns:
        loss with the shape of ``speed``.
    """
    system, speed, start = _check_pass(system, speed, start)
    dim = system.lattice.dim
    if n_radial is None:
        n_radial = 32 if dim == 3 else 96
    flat = speed.reshape(-1)
    if size is None:
        rule = pyramid_rule(dim, int(n_radial), int(n_face), 1.0)
    else:
        if isinstance(size, bool) or int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer (cells per axis) or None, got {size!r}")
        q = periodic_grid(int(size), dim)
        rule = (q, np.full(q.shape[0], 1.0 / q.shape[0]))
    options = (float(fourier_step), float(fourier_window), min(int(batch_size), flat.shape[0]), size is not None)
    return _loss_perturbative(system, flat, start, tuple(map(jnp.asarray, rule)), options).reshape(speed.shape)


@eqx.filter_jit
def _loss_perturbative(system, speeds, start, rule, options):
    """Compiled body of :func:`loss_perturbative` for speeds ``(V,)`` with the unit zone rule
    ``rule = (q (P, dim), w (P,))`` (passed as arrays, not baked in as constants), shrunk per
    speed to where the integrand lives unless ``periodic`` (a box's mode sum, used as it is);
    ``options = (fourier_step, fourier_window, batch_size, periodic)`` are static."""
    fourier_step, fourier_window, batch_size, periodic = options
    lattice = system.lattice
    unit_q, unit_w = rule
    positions = system.site_positions()
    transform = _force_transform(system.potential, positions[:, :2] - start, fourier_step, fourier_window)
    cells = jnp.asarray(system.site_cells, dtype=float)
    bounds = _spectrum_bounds(lattice)

    def one_speed(v):
        extent = 1.0 if periodic else _zone_extent(*bounds, transform.k_cut, v)
        q = unit_q * extent
        weights = unit_w * extent**lattice.dim
        phases = jnp.exp(1j * q @ cells.T)
        matrices = lattice.dynamical_matrix(q)
        params = (v, positions[:, 2], transform)
        branch = jax.vmap(lambda m, ph: _branch_sum(_mode_response, m, ph, params))(matrices, phases)
        return 2.0 * jnp.pi**2 * jnp.sum(weights * branch) / lattice.mass

    if speeds.shape[0] <= batch_size:
        return jax.vmap(one_speed)(speeds)
    # Whole batches only: pad with the last speed (lax.map's own remainder handling has been seen
    # to hang XLA:CPU on repeated calls), evaluate batch by batch, drop the padding.
    count = speeds.shape[0]
    padded = jnp.concatenate([speeds, jnp.broadcast_to(speeds[-1], (-count % batch_size,))])
    batched = jax.lax.map(jax.vmap(one_speed), padded.reshape(-1, batch_size))
    return batched.reshape(-1)[:count]


def loss_chain_closed_form(chain, potential, speed, s):
    """Closed form Eq. 14 of the perturbative loss for a chain and a Gaussian, one site:

        Delta_perp = pi Y^2 s^2 phi0^2 / lambda^4 e^(-s^2/lambda^2) e^(-Y^2 kappa_perp) i0e(2 k_perp Y^2)
        Delta_par  = pi Y^4 phi0^2 / lambda^2 e^(-s^2/lambda^2) e^(-Y^2 kappa_par)
                     [(kappa_par + 2 k_par) i0e(2 k_par Y^2) - 2 k_par i1e(2 k_par Y^2)]

    with ``Y = 2 pi lambda / v`` and the exponentially scaled Bessel functions
    ``i_ne(x) = exp(-x) I_n(x)``, so it is finite for every ``v > 0``. Springs and confinement are
    divided by the framework mass and the loss too (physics.md's form is ``mass = 1``).

    Args:
        chain: a chain :class:`~jaxion.lattice.Lattice` (``jx.Chain``): ``k_par = k_long[0]``,
            ``k_perp = k_trans[0]``, ``kappa_par = confinement[2]``, ``kappa_perp = confinement[0]``.
        potential: a :class:`~jaxion.potentials.Gaussian`.
        speed: ``v > 0``, any shape.
        s: impact parameter (distance of the path from the site), broadcast with ``speed``.

    Returns:
        ``Delta_perp + Delta_par`` with the broadcast shape of ``speed`` and ``s``.
    """
    if not isinstance(chain, Lattice) or chain.dim != 1 or len(chain.offsets) != 1:
        raise ValueError("loss_chain_closed_form needs a nearest-neighbour chain (jx.Chain)")
    if not isinstance(potential, Gaussian):
        raise ValueError(
            f"loss_chain_closed_form is the closed form for a Gaussian potential, got {type(potential).__name__}; "
            "use loss_perturbative for other potentials"
        )
    speed = jnp.asarray(speed, dtype=float)
    s = jnp.asarray(s, dtype=float)
    problems = _checks.problems_of(chain, potential)
    problems += [_checks.positive("speed", speed), _checks.finite("impact parameter s", s)]
    chain, potential, speed, s = _checks.enforce((chain, potential, speed, s), problems)
    return _chain_closed_form(chain, potential, speed, s)


@eqx.filter_jit
def _chain_closed_form(chain, potential, speed, s):
    """Compiled body of :func:`loss_chain_closed_form`."""
    mass = chain.mass
    k_par, k_perp = chain.k_long[0] / mass, chain.k_trans[0] / mass
    kappa_par, kappa_perp = chain.confinement[2] / mass, chain.confinement[0] / mass
    width, phi0 = potential.width, potential.phi0
    y2 = (2.0 * jnp.pi * width / speed) ** 2
    common = jnp.pi * phi0**2 * jnp.exp(-(s**2) / width**2) / mass
    perp = common * y2 * s**2 / width**4 * jnp.exp(-y2 * kappa_perp) * jax.scipy.special.i0e(2.0 * k_perp * y2)
    bessel = (kappa_par + 2.0 * k_par) * jax.scipy.special.i0e(2.0 * k_par * y2) - 2.0 * k_par * jax.scipy.special.i1e(
        2.0 * k_par * y2
    )
    par = common * y2**2 / width**2 * jnp.exp(-y2 * kappa_par) * bessel
    return perp + par


def _require_system(system):
    """Raise ``ValueError`` unless ``system`` is a :class:`~jaxion.system.System`."""
    if not isinstance(system, System):
        raise ValueError(
            f"system must be a jaxion System (jx.System(lattice, potential, sites)), got {type(system).__name__}"
        )


def _check_pass(system, speed, start):
    """``(system, speed, start)`` validated (eagerly, or by run-time errors when traced): a valid
    system, positive finite speeds (any shape), a finite ``(2,)`` start whose straight path avoids
    singular sites (:meth:`~jaxion.system.System.path_problem`)."""
    _require_system(system)
    speed = jnp.asarray(speed, dtype=float)
    start = jnp.asarray(start, dtype=float)
    _checks.require_shape("start (the transverse position (x0, y0))", start, (2,))
    problems = _checks.problems_of(system) + [_checks.positive("speed", speed), _checks.finite("start", start)]
    return _checks.enforce((system, speed, start), problems + [system.path_problem(start)])


def _spectrum_bounds(lattice):
    """Safe bounds used to size the zone rule (not differentiated).

    Returns ``(s_min, kappa_min, bond_reach)``: half the smallest long-wave eigenvalue found over
    sampled directions, the band bottom ``min(kappa) / mass`` (``D(0) = diag(kappa) / mass``),
    and ``max_b |b|_1``.
    """
    lattice = jax.lax.stop_gradient(lattice)
    if lattice.dim == 3:
        directions = jnp.asarray(sphere_rule(8, 16)[0])
    else:
        directions = jnp.ones((1, 1))
    s_min = 0.5 * jnp.min(jnp.linalg.eigvalsh(lattice.long_wave_tensor(directions)))
    kappa_min = jnp.min(lattice.confinement) / lattice.mass
    bond_reach = float(np.max(np.sum(np.abs(np.array(lattice.offsets)), axis=1)))
    return s_min, kappa_min, bond_reach


def _zone_extent(s_min, kappa_min, bond_reach, k_cut, speed):
    """``radial_max`` of the zone rule. The integrand peaks at the band bottom
    ``omega_b = sqrt(kappa_min)`` and is negligible for ``k = 2 pi omega / v`` more than ``k_cut``
    above it, i.e. beyond ``omega^2 - omega_b^2 = omega_c^2 + 2 omega_b omega_c``,
    ``omega_c = v k_cut / 2 pi``. Since ``1 - cos x >= 2 x^2 / pi^2`` for ``|x| <= pi``,
    ``omega^2 - omega_b^2 >= (4 / pi^2) |q|^2 s_min`` while ``|q.b| <= pi`` for every bond, which
    holds in the cube of half-width ``pi / bond_reach``; beyond it the whole zone is used."""
    omega_c = jax.lax.stop_gradient(speed * k_cut) / (2.0 * jnp.pi)
    excess = omega_c**2 + 2.0 * jnp.sqrt(kappa_min) * omega_c
    q_cut = 0.5 * jnp.pi * jnp.sqrt(excess / jnp.where(s_min > 0, s_min, 1.0))
    extent = q_cut / jnp.pi
    return jnp.where((s_min > 0) & (extent <= 1.0 / bond_reach), extent, 1.0)


def _mode_response(omega, phase, params):
    """``Re(A A^H)`` for one mode frequency: ``A = sum_a phase_a Fhat_a(omega)`` (3,) complex.

    Args:
        omega: mode frequency (scalar).
        phase: ``(S,)`` ``exp(i q.n_a)``.
        params: ``(speed, site_z (S,), transform)``.
    """
    speed, site_z, transform = params
    k = 2.0 * jnp.pi * omega / speed
    amplitude = jnp.einsum("s,si->i", phase * jnp.exp(1j * k * site_z), transform(k)) / speed
    return jnp.real(amplitude[:, None] * jnp.conj(amplitude)[None, :])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _branch_sum(response, matrix, phase, params):
    """``sum_u eta_u^T R(omega_u) eta_u`` over the eigenpairs ``(omega_u^2, eta_u)`` of ``matrix (3, 3)``,
    ``R = response(omega, phase, params) (3, 3)``.

    It is a sum of matrix functions of ``matrix``, smooth even where branches are degenerate (an
    isotropic chain has ``D(q)`` proportional to the identity), so the derivative is given by the
    Daleckii-Krein divided differences instead of eigenvector derivatives.
    """
    eigenvalues, vectors = jnp.linalg.eigh(matrix)
    omega = jnp.sqrt(jnp.clip(eigenvalues, 0.0))
    responses = jax.vmap(response, (0, None, None))(omega, phase, params)
    return jnp.einsum("iu,uij,ju->", vectors, responses, vectors)


@_branch_sum.defjvp
def _branch_sum_jvp(response, primals, tangents):
    matrix, phase, params = primals
    d_matrix, d_phase, d_params = tangents
    eigenvalues, vectors = jnp.linalg.eigh(matrix)
    omega = jnp.sqrt(jnp.clip(eigenvalues, 0.0))

    def with_tangents(om):
        value, d_value = jax.jvp(lambda p, ph: response(om, ph, p), (params, phase), (d_params, d_phase))
        _, d_omega = jax.jvp(lambda o: response(o, phase, params), (om,), (jnp.ones_like(om),))
        return value, d_value, d_omega

    responses, d_responses, d_by_omega = jax.vmap(with_tangents)(omega)
    value = jnp.einsum("iu,uij,ju->", vectors, responses, vectors)
    d_fixed_modes = jnp.einsum("iu,uij,ju->", vectors, d_responses, vectors)
    # dR/dw = dR/domega / (2 omega), w = omega^2 (a gapless mode at exactly q = 0 has no weight).
    d_by_w = d_by_omega / jnp.where(omega > 0, 2.0 * omega, jnp.inf)[:, None, None]
    projected = jnp.einsum("iu,xij,jv->xuv", vectors, responses, vectors)  # V_u^T R(w_x) V_v
    projected_d = jnp.einsum("iu,xij,jv->xuv", vectors, d_by_w, vectors)
    index = jnp.arange(3)
    at_u = projected[index[:, None], index[:, None], index[None, :]]
    at_v = projected[index[None, :], index[:, None], index[None, :]]
    slope = 0.5 * (
        projected_d[index[:, None], index[:, None], index[None, :]]
        + projected_d[index[None, :], index[:, None], index[None, :]]
    )
    gap = eigenvalues[:, None] - eigenvalues[None, :]
    close = jnp.abs(gap) <= 1e-6 * (jnp.abs(eigenvalues[:, None]) + jnp.abs(eigenvalues[None, :]) + 1e-300)
    divided = jnp.where(close, slope, (at_u - at_v) / jnp.where(close, 1.0, gap))
    rotated = vectors.T @ (0.5 * (d_matrix + d_matrix.T)) @ vectors
    return value, d_fixed_modes + jnp.sum(rotated * divided)


class _GaussianTransform(eqx.Module):
    """Closed-form ``ghat_a(k)`` of the Gaussian for transverse offsets ``(S, 2)``."""

    phi0: jax.Array
    width: jax.Array
    offsets: jax.Array

    @property
    def k_cut(self):
        """``|ghat|^2 ~ exp(-k^2 lambda^2)`` is negligible beyond this."""
        return jnp.sqrt(_CUTOFF_EXPONENT) / self.width

    def __call__(self, k):
        """``(S, 3)`` complex transforms at scalar ``k``."""
        width = self.width
        scale = (
            jnp.sqrt(2.0 * jnp.pi)
            * width
            * self.phi0
            * jnp.exp(-jnp.sum(self.offsets**2, axis=-1) / (2.0 * width**2) - 0.5 * (k * width) ** 2)
        )
        vector = jnp.concatenate(
            [self.offsets / width**2 + 0j, jnp.broadcast_to(-1j * k, self.offsets.shape[:1] + (1,))], axis=-1
        )
        return scale[:, None] * vector


class _SumTransform(eqx.Module):
    """Transform of a sum of pair potentials: the sum of the transforms."""

    terms: tuple

    @property
    def k_cut(self):
        return jnp.max(jnp.stack([term.k_cut for term in self.terms]))

    def __call__(self, k):
        return sum(term(k) for term in self.terms)


class _TabulatedTransform(eqx.Module):
    """``ghat_a(k)`` tabulated with its ``k``-derivative on ``k = j * step`` (``j = 0..K-1``),
    interpolated by cubic Hermite polynomials, zero beyond the table."""

    step: jax.Array
    values: jax.Array  # (K, S, 3) complex
    slopes: jax.Array  # (K, S, 3) complex

    @property
    def k_cut(self):
        """Largest tabulated ``k`` where ``|ghat|^2`` is above ``exp(-45)`` of its maximum."""
        size = jnp.sqrt(jnp.sum(jnp.abs(self.values) ** 2, axis=(1, 2)))
        k = self.step * jnp.arange(self.values.shape[0])
        return jnp.max(jnp.where(size >= jnp.exp(-0.5 * _CUTOFF_EXPONENT) * jnp.max(size), k, 0.0))

    def __call__(self, k):
        position = k / self.step
        last = self.values.shape[0] - 1
        index = jnp.clip(jnp.floor(position), 0, last - 1).astype(int)
        t = position - index
        h00, h10 = (1 + 2 * t) * (1 - t) ** 2, t * (1 - t) ** 2
        h01, h11 = t**2 * (3 - 2 * t), t**2 * (t - 1)
        value = (
            h00 * self.values[index]
            + h10 * self.step * self.slopes[index]
            + h01 * self.values[index + 1]
            + h11 * self.step * self.slopes[index + 1]
        )
        return jnp.where(position <= last, value, 0.0)


def _force_transform(potential, offsets, fourier_step, fourier_window):
    """The transform ``ghat_a(k)`` of the site forces for transverse offsets ``d_a`` ``(S, 2)``:
    closed form for Gaussians (and sums of them), a table for any other pair potential."""
    if isinstance(potential, Gaussian):
        return _GaussianTransform(potential.phi0, potential.width, offsets)
    if isinstance(potential, PairSum):
        return _SumTransform(tuple(_force_transform(t, offsets, fourier_step, fourier_window) for t in potential.terms))
    if not isinstance(potential, AbstractPairPotential):
        raise ValueError(f"potential must be a jaxion pair potential, got {type(potential).__name__}")
    return _tabulate(potential, offsets, fourier_step, fourier_window)


def _tabulate(potential, offsets, fourier_step, fourier_window):
    """Trapezoid rule for ``ghat_a(k)`` and ``ghat_a'(k)``: samples ``u = j h`` with
    ``h = fourier_step * range``, ``|u| <= fourier_window * range``, wave numbers up to ``pi / h``
    (the aliasing limit of the samples)."""
    length = potential.range
    h = fourier_step * length
    half = int(np.ceil(fourier_window / fourier_step))
    u = h * jnp.arange(-half, half + 1, dtype=float)
    n_k = int(np.ceil(np.pi / (fourier_step * _TABLE_K_STEP))) + 1
    k_step = np.pi / (fourier_step * (n_k - 1)) / length
    k = k_step * jnp.arange(n_k, dtype=float)
    shape = (offsets.shape[0], u.shape[0])
    transverse = jnp.broadcast_to(offsets[:, None, :], shape + (2,))
    separations = jnp.concatenate([transverse, -jnp.broadcast_to(u[None, :, None], shape + (1,))], axis=-1)
    force = -jax.vmap(jax.vmap(jax.grad(potential)))(separations)  # (S, U, 3)
    kernel = h * jnp.exp(1j * k[:, None] * u[None, :])  # (K, U)
    values = jnp.einsum("ku,sui->ksi", kernel, force + 0j)
    slopes = jnp.einsum("ku,sui->ksi", kernel * (1j * u[None, :]), force + 0j)
    return _TabulatedTransform(k_step, values, slopes)
