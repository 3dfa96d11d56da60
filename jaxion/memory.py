"""The framework's memory kernel: its retarded Green's function on a few sites, tabulated in time.

With the framework harmonic and at rest at ``tau = 0``, a force ``F_S(s)`` on the sites ``S`` (cells
``n_a``) displaces them by (Eq. 4 solved by the retarded Green's function; physics.md)

    rho_S(tau)  = integral_0^tau K(tau - s) F_S(s) ds,
    rho_S'(tau) = integral_0^tau K'(tau - s) F_S(s) ds,
    K_ab(tau)   = (4 pi^2 / m) (1/N) sum_q cos(q.(n_a - n_b)) sum_u eta_u eta_u^T sin(2 pi omega_u tau) / (2 pi omega_u)

(translation modes included: ``sin(2 pi omega tau) / (2 pi omega) -> tau``; ``K(0) = 0``,
``K'(0) = (4 pi^2 / m) delta_ab I``). :func:`memory_kernel` tabulates ``K`` and ``K'`` on a time grid
(:class:`MemoryKernel`, one symmetric 3x3 block per distinct site separation ``d = n_a - n_b``,
``K(d) = K(-d)``); :mod:`jaxion.kernel` integrates the ion and its sites with it.

Mode sum (:func:`mode_sum`). The branch sum is a function of the dynamical matrix (eigenvalues
``omega_u^2``; ``D`` includes ``1/m``):

    sum_u eta_u eta_u^T sin(2 pi omega_u t) / (2 pi omega_u) = s_t(D(q)),
    s_t(lambda) = sin(2 pi sqrt(lambda) t) / (2 pi sqrt(lambda)),

and ``c_t(lambda) = cos(2 pi sqrt(lambda) t)`` for ``K'``; both are entire in ``lambda`` (``s_t(0) = t``: the
translation modes need no special case). On ``[0, lambda_b]``, ``lambda_b = 1.01 max_q lambda_max(D(q))``
(:func:`spectral_bound`), they are expanded in Chebyshev polynomials of ``X(q) = 2 D(q) / lambda_b - 1``:

    K(t; d) = (4 pi^2 / m) sum_{j<p} s_j(t) mu_j(d),   mu_j(d) = sum_q w_q cos(q.d) T_j(X(q))   (c_j for K').

The moments ``mu_j`` come from ``T_{j+1} = 2 X T_j - T_{j-1}`` on batched symmetric 3x3 blocks (a
``lax.scan`` over ``j`` per chunk of ``q``); no eigenvectors. The coefficients are those of interpolation at
the ``p`` Chebyshev nodes ``lambda_k`` (a DCT of ``s_t(lambda_k)``), so instead of a DCT per time the
transform is applied once to the moments, ``nu_k = sum_j (eps_j / p) cos(j theta_k) mu_j``, and
``K(t_n) = sum_k s_{t_n}(lambda_k) nu_k`` is one matrix product over the nodes (:func:`chebyshev_nodes`).
By Jacobi-Anger the coefficients are Bessel functions ``J_2j(a)``, ``a = 2 pi sqrt(lambda_b) t``, which fall
super-exponentially once ``2 j > a``: the degree is the smallest multiple of 16 with ``2 |J_2p(a)| <= 1e-16``
at ``t1`` (:func:`chebyshev_degree`; ``p ~ a / 2 + 6 a^(1/3)``, 1024 for ``omega_max = 10``, ``t1 = 30``).
Cost: ``#q p (42 + 12 D)`` flops for the moments plus ``24 D T p`` for the nodal sums (``T`` times),
against ``108 D #q T`` for an eigenvector sum, with ``p ~ pi omega_max t1 = pi omega_max dt T``. The
result is exact up to rounding, which the phases ``2 pi omega t`` amplify (tests: 1e-12 of ``max|K|``;
measurements in ``docs/validation.md``). Being polynomial in ``D(q)``, the kernel is differentiable in
the springs, confinement and mass by plain autodiff, also where branches are degenerate; the interval
and degree are numbers read from the lattice's values (no derivative flows through them: the
expansion holds on any interval containing the spectrum), so the kernel is built outside ``jax.jit``
/ ``jax.vmap``, and reverse mode keeps one chunk's ``p`` steps at a time (checkpointed).

Wave vectors (:func:`brillouin_rule`):

* finite periodic ``L^dim`` lattice (``size=L``): the exact sum over the FFT grid of ``q``
  (``brillouin.periodic_grid``, weights ``1/N``);
* infinite lattice (``size=None``): the Gamma-centred pyramid rule (``brillouin.pyramid_rule``). By
  Poisson summation a uniform grid of size ``L`` is the kernel of the periodic lattice, i.e. the
  infinite kernel plus images that arrive at ``tau ~ L / v_max``; the Gauss rule has no images but
  must resolve the phase ``2 pi omega tau``: the rule ``(n_radial, 0.75 n_radial)`` is converged (1e-9
  of ``K'(0)``) up to ``tau ~ n_radial / (8 omega_max)`` (:func:`kernel_horizon_estimate`; check with
  :func:`kernel_horizon`). Both routes cost ~ ``(v_max t1)^dim`` wave vectors: a chain is converged to
  any ``t1`` at once (default resolution chosen from ``t1``), a 3D kernel converged to ``t1 = 30``
  would need ~1e10: ``boundary="quadrature"`` refuses it (``ValueError``) and the default
  ``boundary="auto"`` builds the absorbing-box kernel below instead; an explicit ``resolution`` is
  accepted with a warning naming its horizon.
  Both rules are halved with ``K(q) = K(-q)``.
* infinite lattice from an absorbing box (:class:`AbsorbingBoundary`, :func:`absorbing_response`; the
  default for ``size=None`` where the pyramid rule would be too large): ``K`` is the real-time impulse
  response (``rho'(0) = (4 pi^2 / m) e_j`` on one source site, three polarisations vmapped; by
  translation invariance one source gives every separation) of a periodic ``box^dim`` lattice whose
  masses within ``layer`` cells of the faces feel a friction ``-gamma(n) rho'`` rising quadratically to
  ``damping``. Time integration: the Taylor polynomial of ``exp(h M)`` for the linear system
  ``y' = M y`` (``||h M|| <= 2.5``, degree ~22 at ``tol = 1e-14``: exact to rounding) with dense output
  at the table's times from the same Taylor terms (a ``lax.scan``). Until a signal returns from the
  layer the result is the infinite lattice's to rounding (the lattice's precursors run ahead of the
  fastest group velocity, so the 1e-10 level is reached at ~0.5 of the straight echo time
  :meth:`AbsorbingBoundary.exact_until`); afterwards its error is the layer's residual reflection,
  ~1e-3 of ``max|K|`` at the defaults for the Fig. 6 sites (``docs/validation.md``, "Kernel method").
  The box's springs are the framework's periodic stencil (:class:`jaxion.stencil.PeriodicStencil`).
  Cost ~ ``box^dim t1``.

Kernels are built once per lattice, sites, size, boundary and time grid; a :class:`KernelCache`
passed as ``memory_kernel(..., cache=...)`` keeps them (the kernel description holds a default one,
:attr:`jaxion.kernel.KernelDynamics.default_cache`, so that repeated runs share a table).
"""

import collections
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from . import _checks
from .brillouin import periodic_grid, pyramid_rule
from .stencil import PeriodicStencil

FOUR_PI2 = 4.0 * math.pi**2


# ----------------------------------------------------------------------------- memory kernel


class MemoryKernel(eqx.Module):
    """Tabulated site-block retarded Green's function and its derivative.

    Attributes:
        values: ``(T, 2, D, 3, 3)``: ``K(t_n; d)`` and ``K'(t_n; d)`` at ``t_n = n dt`` for the ``D``
            distinct site separations ``d`` (``K(-d) = K(d)``).
        pairs: static ``S x S`` tuple: index into ``D`` of the separation ``n_a - n_b``.
        dt: static time step of the table.
        size: static ``L`` of the periodic lattice, or ``None`` (infinite).
    """

    values: jax.Array
    pairs: tuple = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    size: int | None = eqx.field(static=True)

    @property
    def n_times(self):
        return self.values.shape[0]

    def blocks(self):
        """``K`` and ``K'`` as full site blocks ``(T, 2, S, S, 3, 3)``."""
        return self.values[:, :, np.array(self.pairs)]


def _separations(cells):
    """Distinct separations up to sign and the ``(S, S)`` index of each pair."""
    cells = np.asarray(cells, dtype=int)
    diff = (cells[:, None, :] - cells[None, :, :]).reshape(-1, cells.shape[1])
    canon = np.array([max(tuple(d), tuple(-d)) for d in diff]).reshape(diff.shape)
    unique, index = np.unique(canon, axis=0, return_inverse=True)
    return unique, index.reshape(len(cells), len(cells))


# A symmetric 3x3 block as its 6 independent entries, and the (i, j) -> entry map.
_PACKED = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
_PACKED_INDEX = np.array([[0, 3, 4], [3, 1, 5], [4, 5, 2]])
# The Chebyshev interval is [0, (1 + margin) max_q lambda_max(D(q))]: every D(q) lies strictly inside.
_SPECTRAL_MARGIN = 1e-2
# Coefficients beyond the degree are below this fraction of the functions' maxima (chebyshev_degree).
_TRUNCATION = 1e-16
# Degrees are rounded up to a multiple of this: a few spare terms, and similar lattices share one compiled scan.
_DEGREE_STEP = 16
_MOMENT_CHUNK = 2048  # wave vectors per call of the moment recurrence
_TIME_CHUNK = 4096  # times per block of the nodal sums (memory ~ 2 _TIME_CHUNK p numbers)


def _numeric(value, what):
    """``value`` as a NumPy array without its derivative (under ``jax.grad`` / ``jax.jvp`` outside
    ``jax.jit`` the primal is concrete); ``ValueError`` when ``jax.jit`` or ``jax.vmap`` traces it."""
    value = jax.lax.stop_gradient(value)
    if not _checks.is_concrete(value):
        raise ValueError(
            f"the memory kernel needs {what} as a number to size its expansion: build the kernel outside "
            "jax.jit and jax.vmap (jax.grad and jax.jvp of it are fine), or pass a precomputed kernel"
        )
    return np.asarray(value, dtype=float)


_dynamical_matrices = jax.jit(lambda lattice, q: lattice.dynamical_matrix(q))


def spectral_bound(lattice, q):
    """Upper end ``lambda_b = (1 + 1e-2) max_p lambda_max(D(q_p))`` of the Chebyshev interval for the wave
    vectors ``q (P, dim)``: a number (no derivative flows through it; any interval containing the spectrum
    gives the same matrix function)."""
    matrices = _dynamical_matrices(jax.lax.stop_gradient(lattice), jnp.asarray(q))
    return (1.0 + _SPECTRAL_MARGIN) * float(np.max(np.linalg.eigvalsh(_numeric(matrices, "the lattice's spectrum"))))


def chebyshev_degree(bound, t1, tol=_TRUNCATION):
    """Degree ``p`` of the expansion on ``[0, bound]`` valid up to ``t1``.

    With ``lambda = bound (1 + x) / 2`` and ``x = cos 2 phi``, ``sqrt(lambda) = sqrt(bound) cos phi``, and the
    Jacobi-Anger expansion gives the coefficients in closed form (``a = 2 pi sqrt(bound) t``):

        c_t = J_0(a) + 2 sum_j (-1)^j J_2j(a) T_j(x),
        s_t = integral_0^t c
            = (2 / (2 pi sqrt(bound))) [sum_m J_(2m+1)(a) + 2 sum_j (-1)^j sum_m J_(2j+2m+1)(a) T_j(x)].

    Once ``2 j > a`` they fall super-exponentially (after an Airy-type transition ~ ``a^(1/3)`` wide) and
    grow with ``t``, so ``t1`` is the worst time; relative to the functions' maxima (1 for ``c``, ``t`` for
    ``s``) those of ``s`` are the smaller ones. ``p`` is the smallest multiple of 16 beyond ``a / 2`` with
    ``2 |J_2p(a)| <= tol`` at ``t1`` (``p ~ a / 2 + 6 a^(1/3)`` at ``tol = 1e-16``): the truncation error is
    below rounding.
    """
    reach = 2.0 * math.pi * math.sqrt(bound) * float(t1)
    orders = np.arange(0.0, reach + 16.0 * reach ** (1.0 / 3.0) + 64.0, 2.0)  # the fall is long past at the end
    small = (orders > reach) & (2.0 * np.abs(scipy.special.jv(orders, reach)) <= tol)
    degree = int(orders[small][0]) // 2
    return -(-max(degree, 1) // _DEGREE_STEP) * _DEGREE_STEP


def chebyshev_nodes(bound, degree):
    """The ``p = degree`` Chebyshev nodes on ``[0, bound]`` and the map from moments to nodal weights.

    ``x_k = cos theta_k``, ``theta_k = pi (k + 1/2) / p``, ``lambda_k = bound (1 + x_k) / 2``. Interpolating
    ``f`` at the nodes (``f_j = (eps_j / p) sum_k f(lambda_k) cos(j theta_k)``, a type-II DCT; ``eps_0 = 1``,
    ``eps_j = 2``) turns ``sum_j f_j mu_j`` into ``sum_k f(lambda_k) nu_k`` with
    ``nu_k = sum_j (eps_j / p) cos(j theta_k) mu_j``.

    Returns:
        ``omega_k = sqrt(lambda_k) = sqrt(bound) cos(theta_k / 2) (p,)`` (all positive) and the ``(p, p)``
        matrix ``eps_j cos(j theta_k) / p``.
    """
    theta = np.pi * (np.arange(degree) + 0.5) / degree
    frequency = math.sqrt(bound) * np.cos(0.5 * theta)  # sqrt(bound (1 + cos theta) / 2), exact near lambda = 0
    # j theta_k = pi j (2k + 1) / 2p reduced mod 2 pi in integers: cos of large arguments would lose ~ p eps
    turns = np.outer(2 * np.arange(degree) + 1, np.arange(degree)) % (4 * degree)
    weight = np.where(np.arange(degree) == 0, 1.0, 2.0) / degree
    return frequency, np.cos(np.pi * turns / (2 * degree)) * weight


def _symmetric_product(a, b):
    """``a b`` for commuting symmetric 3x3 blocks stored as 6 entries ``(6, ...)`` (the product is symmetric)."""
    return jnp.stack([sum(a[_PACKED_INDEX[i, k]] * b[_PACKED_INDEX[k, j]] for k in range(3)) for i, j in _PACKED])


@functools.partial(jax.jit, static_argnames=("degree", "unroll"))
def _chebyshev_moments(lattice, separations, q, weights, bound, degree, unroll):
    """Moments ``mu_j(d) = sum_p w_p cos(q_p.d) T_j(X_p)``, ``X_p = 2 D(q_p) / bound - 1``, ``j < degree``, for
    ``q (c, dim)``, ``weights (c,)``, ``separations (D, dim)``: ``(degree, 6, D)`` (packed 3x3 entries).

    ``T_{j+1} = 2 X T_j - T_{j-1}`` (``T_{-1} = X``, ``T_0 = 1``) in a ``lax.scan`` (``unroll`` steps per
    iteration); checkpointed, so reverse mode keeps only one chunk's ``degree`` steps of ``(6, c)`` blocks at
    a time."""
    identity = jnp.asarray([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])[:, None]
    phases = weights[:, None] * jnp.cos(q @ separations.T)  # (c, D)

    @jax.checkpoint
    def recurrence(lattice):
        matrices = lattice.dynamical_matrix(q)
        scaled = jnp.stack([matrices[:, i, j] for i, j in _PACKED]) * (2.0 / bound) - identity  # (6, c)

        def step(carry, _):
            previous, current = carry
            return (current, 2.0 * _symmetric_product(scaled, current) - previous), current @ phases

        first = (scaled, jnp.broadcast_to(identity, scaled.shape))
        return jax.lax.scan(step, first, None, length=degree, unroll=unroll)[1]

    return recurrence(lattice)


@functools.partial(jax.jit, static_argnames=("n_times",))
def _nodal_sums(mass, moments, to_nodes, frequency, times, n_times):
    """``(4 pi^2 / m) sum_k [s_t, c_t](lambda_k) nu_k`` at ``times (B, c)`` (blocks of ``c``) from the moments
    ``(p, 6, D)``, with ``nu = to_nodes @ mu`` and node frequencies ``omega_k (p,)``: the first ``n_times``
    rows of ``(B c, 2, D, 3, 3)``. Each block is checkpointed (reverse mode recomputes its ``(c, p)`` tables)."""
    degree, _, n_sep = moments.shape
    nodal = to_nodes @ moments.reshape(degree, -1)  # (p, 6 D)

    @jax.checkpoint
    def block(t):
        phase = 2.0 * jnp.pi * t[:, None] * frequency[None, :]
        return jnp.stack([(jnp.sin(phase) / (2.0 * jnp.pi * frequency)) @ nodal, jnp.cos(phase) @ nodal], axis=1)

    table = jax.lax.map(block, times).reshape(-1, 2, 6, n_sep)[:n_times].swapaxes(2, 3)  # (T, 2, D, 6)
    return FOUR_PI2 / mass * table[..., _PACKED_INDEX]


def mode_sum(lattice, separations, q, weights, dt, n_times, chunk=None):
    """``K`` and ``K'`` on ``t_n = n dt`` (``n < n_times``) by the weighted mode sum over ``q``, as a
    Chebyshev expansion in the dynamical matrix (module docstring):

        K(t; d)  = (4 pi^2 / m) sum_p w_p cos(q_p.d) s_t(D(q_p)) = (4 pi^2 / m) sum_k s_t(lambda_k) nu_k(d),
        K'(t; d) = (4 pi^2 / m) sum_k c_t(lambda_k) nu_k(d),

    ``s_t(lambda) = sin(2 pi sqrt(lambda) t) / (2 pi sqrt(lambda))``, ``c_t = cos(2 pi sqrt(lambda) t)``, with the
    moments ``mu_j(d)`` of :func:`_chebyshev_moments` mapped to nodal weights ``nu_k(d)`` by
    :func:`chebyshev_nodes` at the degree of :func:`chebyshev_degree` (:func:`_nodal_sums`). No
    eigenvectors: differentiable in the lattice's parameters. The wave vectors are processed in chunks of
    ``chunk`` by one compiled function (a host loop, outside any solve), the times in blocks of 4096.

    Args:
        lattice: the framework; separations ``(D, dim)`` integer; ``q (P, dim)``, ``weights (P,)``.

    Returns:
        ``(n_times, 2, D, 3, 3)``.
    """
    separations = jnp.asarray(np.asarray(separations, dtype=float))
    bound = spectral_bound(lattice, q)
    degree = chebyshev_degree(bound, (n_times - 1) * float(dt))
    chunk = min(_MOMENT_CHUNK if chunk is None else int(chunk), len(q))
    n_pad = -len(q) % chunk
    q = np.concatenate([np.asarray(q, float), np.zeros((n_pad, q.shape[1]))])
    weights = np.concatenate([np.asarray(weights, float), np.zeros(n_pad)])
    # unrolling 4 steps speeds the recurrence up by ~25 %, but doubles the compile time of its derivative
    unroll = 4 if _checks.is_concrete(lattice) else 1
    moments = sum(_chebyshev_moments(lattice, separations, jnp.asarray(q[s : s + chunk]),
                                     jnp.asarray(weights[s : s + chunk]), bound, degree, unroll)
                  for s in range(0, len(q), chunk))
    frequency, to_nodes = chebyshev_nodes(bound, degree)
    steps = min(_TIME_CHUNK, n_times)
    times = np.arange(-(-n_times // steps) * steps).reshape(-1, steps) * float(dt)
    return _nodal_sums(lattice.mass, moments, jnp.asarray(to_nodes), jnp.asarray(frequency), jnp.asarray(times),
                       n_times)


def _half_rule(q, weights, size):
    """Use ``K(q) = K(-q)`` (real, inversion-symmetric ``D``): keep one of each pair ``q, -q`` with
    twice the weight (self-conjugate points keep theirs)."""
    if size is None:  # pyramid rule: -q lies in the opposite pyramid; keep the +axis pyramids
        dominant = np.take_along_axis(q, np.argmax(np.abs(q), axis=1)[:, None], axis=1)[:, 0]
        keep = dominant > 0
        return q[keep], 2.0 * weights[keep]
    cells = np.rint(q * size / (2.0 * np.pi)).astype(int) % size
    shape = (size,) * q.shape[1]
    index = np.ravel_multi_index(tuple(cells.T), shape)
    partner = np.ravel_multi_index(tuple((-cells % size).T), shape)
    keep = index <= partner
    return q[keep], np.where(index[keep] == partner[keep], 1.0, 2.0) * weights[keep]


# Measured (tests, module docstring): the pyramid rule (n_radial, n_face = 0.75 n_radial) gives the
# infinite kernel to ~1e-9 of K'(0) up to tau ~ n_radial / (8 omega_max).
_HORIZON_POINTS = 8.0
# Largest automatic pyramid rule (points after the q -> -q halving) for a 3D infinite kernel.
_MAX_AUTO_POINTS = 5_000_000


def highest_frequency(lattice):
    """``omega_max`` of the framework (on an 8^dim grid, which contains the zone boundary), a number:
    :meth:`~jaxion.lattice.Lattice.highest_frequency`."""
    return float(_numeric(lattice.highest_frequency(8), "the lattice's spectrum"))


def kernel_horizon_estimate(lattice, resolution):
    """Time (periods) up to which the pyramid rule ``resolution`` resolves the infinite kernel:
    ``n_radial / (8 omega_max)`` (measured; confirm with :func:`kernel_horizon`)."""
    return float(resolution[0]) / (_HORIZON_POINTS * highest_frequency(lattice))


def _automatic_resolution(lattice, t1):
    """Default pyramid rule ``(n_radial, n_face)``: horizon 25 % beyond ``t1``."""
    n_radial = int(math.ceil(1.25 * _HORIZON_POINTS * highest_frequency(lattice) * float(t1))) + 16
    return n_radial, int(math.ceil(0.75 * n_radial))


def _automatic_points(lattice, t1):
    """Wave vectors of the default pyramid rule (before halving)."""
    n_radial, n_face = _automatic_resolution(lattice, t1)
    return 3 * n_radial * n_face**2 if lattice.dim == 3 else n_radial


def brillouin_rule(lattice, size=None, resolution=None, t1=None):
    """``(q, weights)`` of the kernel's mode sum: the periodic grid (weights ``1/N``) or, for
    ``size=None``, the pyramid rule with ``resolution = (n_radial, n_face)``; by default chosen so
    that its horizon ``n_radial / (8 omega_max)`` exceeds ``t1`` by 25 % (``ValueError`` when that
    would be a 3D rule of more than 5e6 points: pass ``resolution`` and accept its horizon, or a
    periodic ``size`` at least ``v_max t1`` cells wide)."""
    if size is not None:
        q = periodic_grid(int(size), lattice.dim)
        return q, np.full(len(q), 1.0 / len(q))
    if resolution is None:
        n_radial, n_face = _automatic_resolution(lattice, t1)
        points = _automatic_points(lattice, t1)
        if points > _MAX_AUTO_POINTS:
            raise ValueError(
                f"an infinite-lattice kernel converged to t1={t1:g} needs a pyramid rule of about "
                f"({n_radial}, {n_face}) = {points:.2g} wave vectors; pass resolution=(n_radial, n_face) "
                "explicitly (converged up to tau ~ n_radial / (8 omega_max), see kernel_horizon) or use a "
                "periodic size L (image-free up to tau ~ L / v_max)"
            )
        resolution = (n_radial, n_face)
    elif float(t1) > kernel_horizon_estimate(lattice, resolution):
        _checks.warn(
            f"the pyramid rule {tuple(resolution)} resolves the infinite-lattice kernel only up to tau ~ "
            f"{kernel_horizon_estimate(lattice, resolution):.3g} < t1 = {float(t1):g}; later kernel values "
            "carry quadrature (aliasing) errors")
    n_radial, n_face = resolution
    return pyramid_rule(lattice.dim, int(n_radial), int(n_face))


# ----------------------------------------------------------------------------- absorbing boundary


class AbsorbingBoundary(eqx.Module):
    """Infinite-lattice kernel from the impulse response of a finite box with a damping layer.

    Attributes (all static):
        box: ``L``, cells per axis of the (periodic) box; the source sits near its centre.
        layer: ``w``, cells per face over which the friction rises from 0 to ``damping``.
        damping: ``gamma_max`` (per period) of the friction ``-gamma(n) rho'`` in the layer,
            ``gamma(n) = gamma_max sum_axes clip((|n_i - c_i| - (L/2 - w)) / w, 0, 1)^2``.
        tol: truncation error per step of the Taylor propagator (relative).
    """

    box: int = eqx.field(static=True, default=40)
    layer: int = eqx.field(static=True, default=14)
    damping: float = eqx.field(static=True, default=12.0)
    tol: float = eqx.field(static=True, default=1e-14)

    def __check_init__(self):
        _checks.require_integer("AbsorbingBoundary box", self.box, low=3)
        _checks.require_integer("AbsorbingBoundary layer", self.layer, low=1)
        if 2 * self.layer >= self.box:
            raise ValueError(f"AbsorbingBoundary layer={self.layer} leaves no interior in box={self.box} "
                             "(need 2 layer < box)")
        _checks.require_positive("AbsorbingBoundary damping", self.damping)
        if not 0.0 < float(self.tol) < 1e-3:
            raise ValueError(f"AbsorbingBoundary tol must be in (0, 1e-3), got {self.tol!r}")

    def damping_profile(self, dim):
        """``gamma(n)`` on the box, ``(L,) * dim`` NumPy array (zero in the interior)."""
        distance = np.abs(np.arange(self.box) - self.box // 2)
        ramp = np.clip((distance - (self.box / 2.0 - self.layer)) / self.layer, 0.0, 1.0) ** 2
        grids = np.meshgrid(*[ramp] * dim, indexing="ij")
        return float(self.damping) * sum(grids)

    def source(self, separations):
        """Cell of the unit impulse: the box centre shifted so that the recorded cells (source +
        separations) are centred; ``ValueError`` when they reach the layer."""
        reach = np.concatenate([np.zeros((1, separations.shape[1]), int), separations])
        shift = -((reach.min(0) + reach.max(0)) // 2)
        cells = reach + shift
        interior = self.box / 2.0 - self.layer
        if np.max(np.abs(cells)) >= interior:
            raise ValueError(
                f"the sites span {np.ptp(reach, axis=0).tolist()} cells, which does not fit in the undamped interior "
                f"(|n - centre| < box/2 - layer = {interior:g}) of AbsorbingBoundary(box={self.box}, "
                f"layer={self.layer}): increase box"
            )
        return self.box // 2 + shift

    def exact_until(self, lattice, separations):
        """Arrival of the first straight echo: from the source to the layer's inner edge and back to
        the nearest recorded cell at the fastest group velocity, ``(d_in + d_back) / v_group_max``
        periods (``separations (D, dim)``). The lattice's precursors run ahead of it: measured, the
        response equals the infinite lattice's to 1e-10 of ``K'(0)`` up to ~0.5-0.75 of this time."""
        cells = self.source(separations) - self.box // 2 + np.concatenate(
            [np.zeros((1, separations.shape[1]), int), separations])  # source first, relative to the centre
        interior = self.box / 2.0 - self.layer
        # via the face at sign * interior on axis i: (interior - sign s_i) + (interior - sign r_i)
        path = min(2.0 * interior - sign * cells[0, i] - np.max(sign * cells[:, i])
                   for i in range(cells.shape[1]) for sign in (1, -1))
        return float(path / max_group_velocity(lattice))


def max_group_velocity(lattice, points=24):
    """Largest group velocity ``2 pi |grad_q omega|`` over the zone (cells per period), from
    automatic derivatives on a shifted ``points^dim`` grid (shifted off the degenerate points)."""
    q = periodic_grid(points, lattice.dim) + 0.37 * np.pi / points
    gradient = jax.vmap(jax.jacfwd(lattice.frequencies))(jnp.asarray(q))  # (P, 3, dim)
    return float(2.0 * np.pi * np.max(np.linalg.norm(np.asarray(gradient), axis=-1)))


def taylor_degree(x, tol):
    """Smallest ``p`` with ``x^(p+1) / (p+1)! < tol``: the Taylor polynomial of ``exp(h M)`` of
    degree ``p`` then errs by less than ``tol`` per step for ``||h M|| <= x``."""
    p, term = 0, x
    while term >= tol:
        p += 1
        term *= x / (p + 1)
    return p


# ||h M|| per Taylor step: degree 22 at tol = 1e-14, i.e. ~9 stencils per unit of ||h M|| (larger steps need
# fewer per unit, ~e for large x, but their terms x^k / k! grow to ~e^x / sqrt(x) and amplify rounding).
_TAYLOR_REACH = 2.5


def absorbing_response(lattice, separations, dt, n_times, boundary):
    """``K``, ``K'`` ``(n_times, 2, D, 3, 3)`` from the impulse response of an absorbing box.

    The box (periodic ``L^dim``, :meth:`~jaxion.stencil.PeriodicStencil.spring_force`) starts at rest
    with a unit impulse ``rho'(0) = (4 pi^2 / m) e_j`` on the source for the three polarisations
    ``j`` (vmapped) and obeys ``rho'' = -4 pi^2 W rho - gamma(n) rho'``; the displacement and
    velocity at ``source + d`` give ``K_ij(t; d)`` and ``K'_ij(t; d)``. The linear system
    ``y' = M y`` is advanced by the Taylor polynomial of ``exp(h M)`` of degree ``p``
    (:func:`taylor_degree`, ``||h M|| <= 2.5`` with ``||M|| ~ max(2 pi omega_max, gamma_max)``),
    whose terms also give the dense output ``y(t + s h) = sum_k s^k (h M)^k y / k!`` at the
    table's times inside the step (``h = m dt``), or ``h = dt / k`` sub-steps when ``dt`` is large.
    """
    dim = lattice.dim
    source = boundary.source(separations)
    rate = max(2.0 * math.pi * highest_frequency(lattice), float(boundary.damping))
    per_sample = dt * rate
    if per_sample <= _TAYLOR_REACH:
        samples, substeps = max(1, int(_TAYLOR_REACH // per_sample)), 1
    else:
        samples, substeps = 1, int(math.ceil(per_sample / _TAYLOR_REACH))
    h = dt * samples / substeps
    degree = taylor_degree(h * rate, float(boundary.tol))
    n_outer = -(-n_times // samples)
    gamma = jnp.asarray(boundary.damping_profile(dim))
    recorded = tuple(map(tuple, (source + separations).T.tolist()))  # per axis: the D recorded cells
    powers = jnp.asarray((np.arange(samples) / samples)[:, None] ** np.arange(degree + 1)[None, :])
    values = _absorbing_scan(PeriodicStencil(lattice, boundary.box), gamma, recorded, tuple(int(c) for c in source),
                             powers, float(h), degree, substeps, n_outer)
    return values[:n_times]


@functools.partial(jax.jit, static_argnames=("recorded", "source", "h", "degree", "substeps", "n_outer"))
def _absorbing_scan(stencil, gamma, recorded, source, powers, h, degree, substeps, n_outer):
    """Taylor-propagate the three impulse responses of the box's ``stencil``; returns
    ``(n_outer * samples, 2, D, 3, 3)``."""
    scale = FOUR_PI2 / stencil.lattice.mass
    springs = jax.vmap(lambda rho: stencil.spring_force(rho, scale=scale))
    shape = (3, 3) + gamma.shape  # (polarisation, component, box...)
    at_sites = (slice(None), slice(None)) + tuple(np.asarray(axis) for axis in recorded)

    def field(y):
        rho, v = y
        return v, springs(rho) - gamma * v

    def taylor_step(y, record):
        """``y(t + h)``; with ``record``, also the ``(samples, 2, D, 3, 3)`` dense output."""

        def term(carry, k):
            current, total, dense = carry
            current = jax.tree_util.tree_map(lambda x: (h / k) * x, field(current))
            total = jax.tree_util.tree_map(jnp.add, total, current)
            if record:
                sites = jnp.stack([current[0][at_sites], current[1][at_sites]])  # (2, pol, comp, D)
                dense = dense + powers[:, k][:, None, None, None, None] * sites
            return (current, total, dense), None

        dense = jnp.zeros((powers.shape[0], 2, 3, 3, len(recorded[0])))
        if record:
            dense = dense + jnp.stack([y[0][at_sites], y[1][at_sites]])[None]
        (_, total, dense), _ = jax.lax.scan(term, (y, y, dense), jnp.arange(1, degree + 1))
        return total, dense

    def outer(y, _):
        y, dense = taylor_step(y, True)
        y = jax.lax.fori_loop(0, substeps - 1, lambda i, y: taylor_step(y, False)[0], y)
        return y, dense

    rho = jnp.zeros(shape)
    velocity = jnp.zeros(shape)
    for j in range(3):
        velocity = velocity.at[(j, j) + source].set(scale)
    _, dense = jax.lax.scan(outer, (rho, velocity), None, length=n_outer)
    # (n_outer, samples, 2, pol j, comp i, D) -> (T, 2, D, i, j)
    dense = dense.reshape((-1,) + dense.shape[2:])
    return jnp.transpose(dense, (0, 1, 4, 3, 2))


class KernelCache:
    """Memory kernels already built, keyed by the lattice's values, the sites, size, Brillouin rule,
    boundary and time grid (least recently used dropped beyond ``maxsize``).

    Pass one as ``memory_kernel(..., cache=cache)`` (or ``jaxion.kernel.simulate(..., cache=cache)``) to
    build each kernel once across calls; ``builds`` counts the kernels it built, ``hits`` the calls
    it answered. A lattice traced by ``jax.jit`` / ``jax.vmap`` / ``jax.grad`` is never cached.
    """

    def __init__(self, maxsize=8):
        _checks.require_integer("KernelCache maxsize", maxsize, low=1)
        self.maxsize = int(maxsize)
        self.builds = 0
        self.hits = 0
        self._kernels = collections.OrderedDict()

    def __len__(self):
        return len(self._kernels)

    def __repr__(self):
        return f"KernelCache(maxsize={self.maxsize}, kernels={len(self)}, builds={self.builds}, hits={self.hits})"

    def clear(self):
        """Forget every kernel (the counters are kept)."""
        self._kernels.clear()

    def lookup(self, key, build):
        """The kernel stored under ``key``, else ``build()`` stored under it."""
        if key in self._kernels:
            self._kernels.move_to_end(key)
            self.hits += 1
            return self._kernels[key]
        kernel = build()
        self.builds += 1
        self._kernels[key] = kernel
        while len(self._kernels) > self.maxsize:
            self._kernels.popitem(last=False)
        return kernel


def _cache_key(lattice, cells, size, dt, n_times, resolution, boundary):
    """Hashable key of a kernel, or ``None`` for a traced lattice (not cacheable)."""
    if not _checks.is_concrete(lattice):
        return None
    leaves = tuple(np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(lattice))
    structure = jax.tree_util.tree_structure(lattice)
    return (structure, leaves, np.asarray(cells).tobytes(), np.asarray(cells).shape, size, float(dt), n_times,
            None if resolution is None else tuple(resolution), boundary)


def _choose_boundary(lattice, size, resolution, t1, boundary):
    """``None`` (mode sum) or the :class:`AbsorbingBoundary` that builds the kernel."""
    if isinstance(boundary, AbsorbingBoundary):
        chosen = boundary
    elif boundary == "absorbing":
        chosen = AbsorbingBoundary()
    elif boundary == "quadrature":
        chosen = None
    elif boundary == "auto":
        automatic = size is None and resolution is None
        chosen = AbsorbingBoundary() if automatic and _automatic_points(lattice, t1) > _MAX_AUTO_POINTS else None
    else:
        raise ValueError(
            f"boundary must be 'auto', 'quadrature', 'absorbing' or an AbsorbingBoundary, got {boundary!r}"
        )
    if chosen is not None and (size is not None or resolution is not None):
        raise ValueError("an absorbing-boundary kernel is for the infinite lattice: pass size=None and no resolution")
    return chosen


def memory_kernel(lattice, cells, dt, t1, size=None, resolution=None, chunk=None, boundary="auto", cache=None):
    """Tabulate ``K`` and ``K'`` between the sites ``cells (S, dim)`` on ``t_n = n dt``, ``0 <= t_n <= t1``.

    Args:
        lattice: the framework.
        cells: ``(S, dim)`` integer site cells (e.g. ``system.site_cells``).
        dt, t1: time step and horizon (concrete).
        size: ``L`` for a periodic ``L^dim`` lattice (exact mode sum), ``None`` for the infinite lattice.
        resolution: ``(n_radial, n_face)`` of the infinite lattice's pyramid rule (default: converged
            to ``t1``, see :func:`brillouin_rule`).
        chunk: wave vectors per call of the moment recurrence (default 2048; memory ~ ``chunk (30 + D)``
            numbers, under reverse-mode differentiation ``12 chunk p`` for the degree ``p``).
        boundary: how the infinite lattice's kernel is built (``size=None``): ``"quadrature"`` (the
            pyramid rule), ``"absorbing"`` (:class:`AbsorbingBoundary` defaults) or an
            :class:`AbsorbingBoundary` (impulse response of a box with a damping layer,
            :func:`absorbing_response`), or ``"auto"``: the pyramid rule unless its default
            resolution for ``t1`` would exceed 5e6 wave vectors (3D beyond tau ~ 1.5), then
            ``AbsorbingBoundary()``.
        cache: a :class:`KernelCache` that keeps the kernels built (on the lattice's values, sites, size,
            rule, boundary and time grid), or ``None`` to build without keeping it.

    Returns:
        :class:`MemoryKernel`.
        Differentiable in the lattice's parameters (``jax.grad``, ``jax.jvp``) outside ``jax.jit``: the
        mode sum's Chebyshev interval and degree are read from the lattice's values, so a lattice traced by
        ``jax.jit`` or ``jax.vmap`` raises ``ValueError`` (a concrete one is fine inside ``jax.jit``).
    """
    _checks.require_positive("dt", dt)
    _checks.require_positive("t1", t1)
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 3):
        raise ValueError(f"size must be an integer >= 3 (periodic lattice) or None (infinite), got {size!r}")
    cells = np.asarray(cells, dtype=int)
    _checks.require_shape("cells", cells, (None, lattice.dim))
    if size is not None and len({tuple(c) for c in np.mod(cells, int(size))}) != len(cells):
        raise ValueError(f"sites {cells.tolist()} fall on the same mass modulo size={size}: the box must be larger")
    n_times = int(math.floor(float(t1) / float(dt) * (1.0 + 1e-12))) + 1
    absorbing = _choose_boundary(lattice, size, resolution, (n_times - 1) * float(dt), boundary)
    if cache is not None and not isinstance(cache, KernelCache):
        raise ValueError(f"cache must be a KernelCache or None, got {type(cache).__name__}")

    def build():
        separations, pairs = _separations(cells)
        with jax.ensure_compile_time_eval():  # a concrete lattice gives a concrete (cacheable) table, even under jit
            if absorbing is not None:
                values = absorbing_response(lattice, separations, float(dt), n_times, absorbing)
            else:
                q, weights = _half_rule(*brillouin_rule(lattice, size, resolution, (n_times - 1) * float(dt)), size)
                values = mode_sum(lattice, separations, q, weights, float(dt), n_times, chunk)
        return MemoryKernel(values=values, pairs=tuple(map(tuple, pairs.tolist())), dt=float(dt),
                            size=None if size is None else int(size))

    key = None if cache is None else _cache_key(lattice, cells, size, dt, n_times, resolution, absorbing)
    return build() if key is None else cache.lookup(key, build)


def kernel_horizon(lattice, cells, dt, t1, resolution, finer=None, tol=1e-8):
    """Time up to which the infinite-lattice kernel at ``resolution`` agrees with a finer rule.

    Compares ``K`` from ``resolution`` and ``finer`` (default: both orders doubled) and returns the
    first tabulated time where the difference exceeds ``tol * max|K|`` (``t1`` if none), and the
    maximum difference.
    """
    finer = finer if finer is not None else tuple(2 * r for r in resolution)
    a = memory_kernel(lattice, cells, dt, t1, None, resolution).values[:, 0]
    b = memory_kernel(lattice, cells, dt, t1, None, finer).values[:, 0]
    diff = np.max(np.abs(np.asarray(a - b)).reshape(a.shape[0], -1), axis=1)
    bad = np.nonzero(diff > tol * float(np.max(np.abs(np.asarray(b)))))[0]
    return (bad[0] * dt if len(bad) else float(t1)), float(np.max(diff))
