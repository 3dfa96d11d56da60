"""History sum of the kernel method: doubling-block FFT versus a sum of exponentials (SOE).

    python benchmarks/bench_history.py [--quick]

``method="kernel"`` needs, at every step ``n``, the Toeplitz history sum
``y_n = h sum_{m<n} K(t_n - t_m) F_m`` for ``K`` and ``K'`` (``jaxion.kernel`` module docstring).
Two ways to make it cheaper than the direct ``O(n)`` per step:

* the doubling-block FFT scheme of Hairer, Lubich and Schlichte that jaxion uses (``O(log^2 n)``
  per step, exact to rounding);
* a sum of exponentials ``K(t) ~ sum_k a_k exp(s_k t)`` (``Re s_k <= 0``, shared by all kernel
  components), after which ``H_k(n+1) = z_k (H_k(n) + F_n)``, ``z_k = exp(s_k h)``, and
  ``y_n = h Re sum_k a_k H_k(n)``: cost per step proportional to the number of terms.

Part 1, how many terms a fit to controlled accuracy needs. For real kernels (``SimpleCubic()``, the 8
Fig. 6 sites ``(0, 0, j)``: periodic L = 16 (t1 <= 30) and 24 (t1 <= 10) by the exact mode sum,
the infinite lattice from an absorbing box (box 32, layer 10; t1 <= 30, ~60-80 s of the run);
``Chain()`` with 8 sites, infinite by the Brillouin-zone quadrature and periodic L = 64, t1 <= 30)
on ``[0, t1]``, with ``K`` and ``K'`` of every separation and component fitted jointly (shared
poles; ``K`` channels scaled by ``max|K|``, ``K'`` by ``max|K'|``):

* a method-independent lower bound: an ``M``-term exponential sum has a Hankel matrix of rank
  ``<= M``, so by Eckart-Young its max error on the samples is at least
  ``sigma_{M+1} / sqrt(rows cols)`` of the stacked Hankel matrix of the data; the bound counts the
  singular values above ``eps sqrt(rows cols)`` (complex terms);
* constructive fits (max error measured on the 200-per-period grid; conjugate pairs folded, so
  ``recursions = real poles + pairs``): the matrix pencil (shift invariance of the dominant right
  singular vectors of the stacked Hankel matrix sampled at 40 points per period, ``omega_max = 10``;
  poles with ``|z| > 1`` put on the unit circle, ``Re s <= 0``; real least-squares amplitudes;
  ranks up to ``MAX_PENCIL_RANK``), and, for kernels that do not decay, a Fourier extension
  (undamped poles on a grid ``k / (alpha t1)`` up to ~``omega_max``, least squares), which the
  pencil cannot match once its unstable poles are moved to the circle. For a periodic lattice the
  exact SOE (every distinct mode frequency, valid for all ``t``) is counted too.

Part 2, cost per step of the three history sums in JAX (jitted ``lax.scan``, float64, the same
``(2, D, 3, 3)`` kernel blocks and site map as ``jaxion.kernel``, 8 sites, a feedback force
``F_n = drive_n - kappa y_n`` so that every scheme must be causal): the SOE recursion for 16, 64
and 256 recursions (up to 3e6 recursion-steps per run; its cost is linear in their number, fitted),
the doubling-block FFT (blocks 16 and 64, the faster compared; see :func:`fft_history` for its
layout) and the direct sum (a full run at n = 1e3, otherwise the last 300 steps at the full window),
for ``n = 1e3, 1e4, 3e4`` steps of ``h = 1e-3`` (``t1 = 1, 10, 30`` periods); plus
``jaxion.kernel.simulate`` itself (``block = 64`` at n = 1e3 and 3e4, the direct ``block = None``
at n = 1e3) on the Fig. 6 system for scale. The SOE cost of each
kernel and tolerance at ``t1 = n h`` then follows from the recursions its fit needed.

Built-in checks (assertions): the pencil recovers known exponents of a synthetic kernel; the SOE
recursion with an exact synthetic SOE kernel and the FFT scheme with a real kernel reproduce the
direct sum to rounding.

``--quick`` (< 30 s) runs tiny sizes as a smoke test and writes ``history_quick.json``;
the full run (< 5 min on 2 CPU cores) writes ``benchmarks/results/history.json``.
"""

import os

# before NumPy loads OpenBLAS: the fits' small dense solves ran ~30x slower threaded on 2 shared cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_call, write_json  # noqa: E402

import jaxion  # noqa: E402,F401  (turns on float64)
from jaxion import kernel  # noqa: E402
from jaxion.brillouin import periodic_grid  # noqa: E402
from jaxion.lattice import Chain, SimpleCubic  # noqa: E402
from jaxion.potentials import Gaussian  # noqa: E402
from jaxion.system import System  # noqa: E402

TOLERANCES = (1e-4, 1e-6, 1e-8)
CHECK_DT = 5e-3  # grid on which fit errors are measured (20 points per period of omega_max = 10)
FIT_STRIDE = 5  # fit samples every FIT_STRIDE check points: dt = 0.025, 40 per period of omega_max
MAX_PENCIL_RANK = 300  # eig of a rank x rank pencil per candidate; larger ranks: lower bound only
SITES_3D = [(0, 0, j) for j in range(8)]
SITES_1D = [(j,) for j in range(8)]
# (period / t1, highest frequency / omega_max) of the Fourier-extension fits, cheapest first
FOURIER_CANDIDATES = ((1.25, 1.02), (1.5, 1.02), (2.0, 1.02), (2.0, 1.1), (3.0, 1.2), (4.0, 1.5))
FFT_BLOCKS = (16, 64)  # block sizes of the FFT scheme timed (64: jaxion's default); the faster one is compared
DIRECT_FULL = 1000  # longest direct run timed in full
DIRECT_PROBE = 300  # steps timed at the full window when a direct run of n steps is too long
SOE_MAX_WORK = 3e6  # recursions x steps of the longest SOE timing run (its cost per step does not depend on n)
KAPPA = 5.0  # feedback spring on the sites in the timing runs (stable: < k1 = 15)


# ----------------------------------------------------------------------------- kernel channels


def channels(values):
    """Distinct non-zero scalar channels of a kernel table ``values (T, 2, D, 3, 3)``.

    Returns:
        ``data (T, C)``: the distinct non-zero columns of ``values.reshape(T, 2 D 9)`` divided by
        ``max|K|`` (the ``count_k`` ``K`` columns, first) or by ``max|K'|``; ``owner (2 D 9,)``: the
        channel each flat column equals (``-1``: zero); ``scale = (max|K|, max|K'|)``; ``count_k``.
    """
    values = np.asarray(values)
    flat = values.reshape(values.shape[0], 2, -1)
    scale = np.abs(flat).max(axis=(0, 2))
    flat = (flat / scale[None, :, None]).reshape(values.shape[0], -1)
    owner, kept = np.full(flat.shape[1], -1), []
    for column in np.nonzero(np.abs(flat).max(axis=0) > 1e-13)[0]:
        same = [i for i, other in enumerate(kept) if np.max(np.abs(flat[:, column] - flat[:, other])) <= 1e-14]
        owner[column] = same[0] if same else len(kept)
        kept += [] if same else [column]
    count_k = sum(column < flat.shape[1] // 2 for column in kept)
    return flat[:, kept], owner, scale, count_k


def expand(coef, owner, scale, n_sep):
    """Complex amplitudes ``(R, C)`` of the distinct channels -> ``(R, 2, D, 3, 3)`` of every entry."""
    full = np.where(owner[None, :] >= 0, coef[:, np.maximum(owner, 0)], 0.0)
    return (full.reshape(len(coef), 2, -1) * scale[None, :, None]).reshape(len(coef), 2, n_sep, 3, 3)


# ----------------------------------------------------------------------------- Hankel bound and matrix pencil


def hankel_space(data, group=4):
    """Singular values and right singular vectors of the stacked Hankel matrix ``[H_1; ...; H_C]``,
    ``H_c[i, j] = data[i + j, c]`` (``N // 2 + 1`` columns), by a block QR over groups of channels.

    Returns:
        ``(sigma (cols,), vh (cols, cols), rows)`` with ``rows`` the stacked matrix's row count.
    """
    n, n_channels = data.shape
    cols = n // 2 + 1
    r = None
    for first in range(0, n_channels, group):
        group_channels = range(first, min(first + group, n_channels))
        block = np.concatenate([sliding_window_view(data[:, c], cols) for c in group_channels])
        r = np.linalg.qr(block if r is None else np.concatenate([r, block]), mode="r")
    _, sigma, vh = np.linalg.svd(r)
    return sigma, vh, n_channels * (n - cols + 1)


def lower_bound_terms(sigma, rows, eps):
    """Fewest complex exponentials that can fit every channel to max error ``eps`` on the samples:
    ``||H - H_fit||_2 <= ||H - H_fit||_F <= sqrt(rows cols) max|error|`` and ``rank H_fit <= M``."""
    return int(np.sum(sigma > eps * math.sqrt(rows * len(sigma))))


def pencil_poles(vh, rank):
    """Matrix-pencil poles ``z`` (per sample) of the ``rank`` dominant right singular vectors; poles
    outside the unit circle are put on it (``Re s <= 0``). Returns ``(z, number moved)``."""
    v = vh[:rank].T
    z = np.linalg.eigvals(np.linalg.lstsq(v[:-1], v[1:], rcond=None)[0])
    z = z[np.abs(z) > 1e-12]  # (a pole at 0 is a lag-0 spike, absent here)
    moved = np.abs(z) > 1.0
    return np.where(moved, z / np.abs(z), z), int(np.sum(moved))


def split_poles(z):
    """Conjugate pairs folded: ``(real (>= 0) poles, one of each pair)`` (negative real poles sit at
    the Nyquist frequency and are kept as complex terms)."""
    real = (z.imag == 0) & (z.real > 0)
    return z[real].real, z[~real & ((z.imag > 0) | ((z.imag == 0) & (z.real < 0)))]


def real_basis(real, pairs, x):
    """``[z^x (real poles), Re z^x, Im z^x (pairs)]`` at fractional sample indices ``x (T,)``: ``(T, R + 2 P)``."""
    grow = np.exp(np.outer(x, np.log(pairs.astype(complex))))
    return np.concatenate([np.exp(np.outer(x, np.log(real))), grow.real, grow.imag], axis=1)


def fit_amplitudes(real, pairs, samples):
    """Least-squares real amplitudes ``(R + 2 P, C)`` of :func:`real_basis` on the samples ``(N, C)``."""
    return np.linalg.lstsq(real_basis(real, pairs, np.arange(len(samples))), samples, rcond=None)[0]


def complex_form(real, pairs, coef):
    """``sum_j coef_j basis_j = Re sum_k c_k z_k^x``: returns ``(z (R + P,), c (R + P, C))``."""
    n_real, n_pairs = len(real), len(pairs)
    c = np.concatenate([coef[:n_real], coef[n_real:n_real + n_pairs] - 1j * coef[n_real + n_pairs:]])
    return np.concatenate([real.astype(complex), pairs]), c


def max_errors(real, pairs, coef, check, stride, count_k, chunk=4096):
    """Max error of the fit on the check grid ``(T, C)`` (sample index ``/ stride``): ``(K, K')``."""
    worst = np.zeros(check.shape[1])
    for first in range(0, len(check), chunk):
        x = np.arange(first, min(first + chunk, len(check))) / stride
        worst = np.maximum(worst, np.abs(real_basis(real, pairs, x) @ coef - check[first:first + len(x)]).max(axis=0))
    return float(worst[:count_k].max()), float(worst[count_k:].max()) if count_k < len(worst) else 0.0


def fourier_basis(frequencies, t):
    """``[1, t, cos(2 pi f t), sin(2 pi f t)]`` at times ``t (T,)``: ``(T, 2 + 2 K)``. As an SOE: a
    confluent pole at 0 (two terms) and ``K`` undamped pairs ``s = +-2 pi i f``."""
    phase = 2.0 * np.pi * np.outer(t, frequencies)
    return np.concatenate([np.ones((len(t), 1)), t[:, None], np.cos(phase), np.sin(phase)], axis=1)


def fourier_errors(frequencies, check, count_k, stride=3):
    """Least-squares Fourier-extension fit on every ``stride``-th check point; max error of ``(K, K')``
    on the whole check grid."""
    t = np.arange(len(check)) * CHECK_DT
    coef = scipy.linalg.lstsq(fourier_basis(frequencies, t[::stride]), check[::stride], cond=1e-14,
                              lapack_driver="gelsy")[0]
    error = np.abs(fourier_basis(frequencies, t) @ coef - check).max(axis=0)
    return float(error[:count_k].max()), float(error[count_k:].max()) if count_k < len(error) else 0.0


def pencil_ranks(bound, largest):
    """``bound, 1.25 bound, 1.25^2 bound, ...`` up to ``largest``."""
    rank = max(1, bound)
    while rank <= largest:
        yield rank
        rank = math.ceil(1.25 * rank)


def fit_soe(check, count_k, tolerances, max_rank, omega_max):
    """Lower bound and two constructive fits of the channels ``check (T, C)`` (check grid) per tolerance.

    * matrix pencil: ranks from the lower bound up by factors of 1.25 (at most ``max_rank``);
    * Fourier extension on ``[0, t1]`` (period ``alpha t1``, frequencies ``k / (alpha t1)`` up to
      ``reach omega_max``, ``(alpha, reach)`` from ``FOURIER_CANDIDATES`` in order), for band-limited
      kernels that do not decay (every pole on the imaginary axis, ``Re s = 0``).

    Each stops at the first candidate whose max errors of ``K`` and ``K'`` are below the tolerance.

    Returns:
        ``(results, fits)``: one dict per tolerance; the pencil's ``(real, pairs, coef)`` by tolerance.
    """
    samples = check[::FIT_STRIDE]
    sigma, vh, rows = hankel_space(samples)
    t1 = (len(check) - 1) * CHECK_DT
    pencil_cache, fourier_cache = {}, {}

    def pencil(rank, eps):
        """Fit at ``rank``; the check-grid errors only when the samples' (a lower bound) pass ``eps``."""
        if rank not in pencil_cache:
            z, moved = pencil_poles(vh, rank)
            real, pairs = split_poles(z)
            coef = fit_amplitudes(real, pairs, samples)
            residual = np.abs(real_basis(real, pairs, np.arange(len(samples))) @ coef - samples).max()
            pencil_cache[rank] = dict(rank=rank, recursions=len(real) + len(pairs), moved_to_circle=moved,
                                      sample_error=float(residual), fit=(real, pairs, coef))
        found = pencil_cache[rank]
        if "error_K" not in found and found["sample_error"] <= eps:
            found["error_K"], found["error_dK"] = max_errors(*found["fit"], check, FIT_STRIDE, count_k)
        return found

    def fourier(alpha, reach):
        if (alpha, reach) not in fourier_cache:
            count = math.ceil(alpha * t1 * reach * omega_max)
            err_k, err_d = fourier_errors(np.arange(1, count + 1) / (alpha * t1), check, count_k)
            fourier_cache[alpha, reach] = dict(alpha=alpha, frequencies=count, recursions=count + 2,
                                               error_K=err_k, error_dK=err_d)
        return fourier_cache[alpha, reach]

    results, fits = [], {}
    for eps in tolerances:
        bound = lower_bound_terms(sigma, rows, eps)
        entry = dict(tolerance=eps, lower_bound_terms=bound, lower_bound_recursions=math.ceil(bound / 2),
                     pencil=None, pencil_tried=[], fourier=None, fourier_tried=[])
        for rank in pencil_ranks(bound, min(max_rank, len(sigma) - 2)):
            found = pencil(rank, eps)
            keys = ("rank", "sample_error", "error_K", "error_dK")
            entry["pencil_tried"].append({k: found[k] for k in keys if k in found})
            if "error_K" in found and max(found["error_K"], found["error_dK"]) <= eps:
                entry["pencil"] = {k: v for k, v in found.items() if k != "fit"}
                fits[eps] = found["fit"]
                break
        for alpha, reach in FOURIER_CANDIDATES:
            found = fourier(alpha, reach)
            entry["fourier_tried"].append(found)
            if max(found["error_K"], found["error_dK"]) <= eps:
                entry["fourier"] = found
                break
        found = [e["recursions"] for e in (entry["pencil"], entry["fourier"]) if e]
        entry["best_recursions"] = min(found) if found else None
        results.append(entry)
    return results, fits


def exact_terms(lattice, size):
    """Complex terms of the exact SOE of a periodic ``L^dim`` kernel (at most): two per distinct non-zero mode
    frequency (``exp(+-2 pi i omega t)``) plus two for the translation mode's ``t``; valid for all ``t``."""
    omega = np.asarray(lattice.frequencies(periodic_grid(size, lattice.dim))).ravel()
    distinct = np.unique(np.round(omega[omega > 1e-7], 9))
    return 2 * len(distinct) + (2 if np.any(omega <= 1e-7) else 0)


# ----------------------------------------------------------------------------- the three history sums (JAX)


def site_sum(kern, onehot, forces):
    """``sum_b K_ab F_b`` summed over the leading axis: ``kern (R, 2, D, 3, 3)``, ``onehot (S, S, D)``,
    ``forces (R, S, 3)`` -> ``(2, S, 3)`` (the contraction ``jaxion.kernel`` uses)."""
    return jnp.einsum("rcdxy,abd,rby->cax", kern, onehot, forces)


@jax.jit
def soe_history(z, coef, onehot, drive, h):
    """``y_n = h Re sum_k c_k H_k(n)``, ``H_k(n+1) = z_k (H_k(n) + F_n)``, ``F_n = drive_n - kappa y_n[0]``.

    Args:
        z: ``(R,)`` complex poles per step; coef: ``(R, 2, D, 3, 3)`` complex amplitudes of ``K``, ``K'``;
        onehot: ``(S, S, D)`` pair -> separation; drive: ``(n, S, 3)``; h: step.

    Returns:
        ``(n, 2, S, 3)``.
    """
    stacked = jnp.concatenate([coef.real, -coef.imag])  # Re(c H) = c_r H_r - c_i H_i

    def step(state, force_in):
        y = h * site_sum(stacked, onehot, jnp.concatenate([state.real, state.imag]))
        force = force_in - KAPPA * y[0]
        return z[:, None, None] * (state + force[None]), y

    return jax.lax.scan(step, jnp.zeros((len(z),) + drive.shape[1:], complex), drive)[1]


@functools.partial(jax.jit, static_argnames=("steps",))
def direct_history(table, onehot, drive, h, steps):
    """The direct sum ``y_n = h sum_{m<n} K_{n-m} F_m`` over a fixed window of ``W = len(table)`` lags (as
    ``block=None`` in ``jaxion.kernel``; every step costs the full window) for the first ``steps`` steps."""
    window = table.shape[0]
    lagged = table.at[0].set(0.0)
    reverse = jnp.concatenate([lagged[::-1], jnp.zeros_like(lagged[1:])])  # reverse[j] = K[W - 1 - j], 0 past lag 0

    def step(history, xs):
        n, force_in = xs
        y = h * site_sum(jax.lax.dynamic_slice_in_dim(reverse, window - 1 - n, window), onehot, history)
        force = force_in - KAPPA * y[0]
        return history.at[n].set(force), y

    history = jnp.zeros((window,) + drive.shape[1:])
    return jax.lax.scan(step, history, (jnp.arange(steps), drive[:steps]))[1]


def fft_history(table, onehot, drive, h, block):
    """The doubling-block scheme of Hairer, Lubich and Schlichte (history part of ``jaxion.kernel``):
    blocks of ``block`` steps summed directly, and the forces of each first half of a segment of
    ``2 s`` steps convolved by FFT with ``K[0:2s]`` into its second half.

    Written as a recursion over segment sizes (each level one ``lax.scan`` over its two halves), so
    nothing of size ``n`` is touched per block (20-35 us/step for n = 1e3 - 3e4). ``jaxion.kernel._integrate``
    used to keep the pending FFT outputs in one ``2 n`` array that ``lax.switch`` copied at every block
    (~40 us/step at n = 1e3, ~105 us/step at n = 3e4 for the same history sum); it now uses the same
    segment recursion.

    Runs ``block 2^L >= n`` steps (:func:`padded_steps`; costs are quoted per computed step) and
    returns the first ``n``.
    """
    n = drive.shape[0]
    total = padded_steps(n, block)
    table = jnp.concatenate([table[: n + 1], jnp.zeros((2 * total - n - 1,) + table.shape[1:])])
    drive = jnp.concatenate([drive, jnp.zeros((total - n,) + drive.shape[1:])])
    return _fft_history(table, onehot, drive, h, block)[:n]


@functools.partial(jax.jit, static_argnames=("block",))
def _fft_history(table, onehot, drive, h, block):
    """:func:`fft_history` on padded arrays: ``table (2 total, ...)``, ``drive (total, S, 3)``,
    ``total = block 2^L``."""
    total = drive.shape[0]
    near_table = table[np.maximum(np.arange(block)[:, None] - np.arange(block)[None, :], 0)]  # K[i - l], i, l < block
    zeros = lambda size: jnp.zeros((size, 2) + drive.shape[1:])

    def leaf(far, force_in):
        """One block, given the FFT part ``far (block, 2, S, 3)``: ``(forces, outputs)``."""

        def step(buffer, xs):
            i, far_i, drive_i = xs
            y = h * (site_sum(near_table[i], onehot, buffer) + far_i)
            force = drive_i - KAPPA * y[0]
            return buffer.at[i].set(force), y

        return jax.lax.scan(step, jnp.zeros((block,) + drive.shape[1:]), (jnp.arange(block), far, force_in))

    def segment(level):
        """``block 2^level`` steps: the two halves in turn, the first half's forces convolved into the second."""
        if level == 0:
            return leaf
        child, half = segment(level - 1), block * 2 ** (level - 1)
        spectrum = jnp.fft.rfft(table[: 2 * half], axis=0)

        def square(forces):
            x = jnp.fft.rfft(forces, n=2 * half, axis=0)
            return jnp.fft.irfft(jnp.einsum("wcdxy,abd,wby->wcax", spectrum, onehot, x), n=2 * half, axis=0)[half:]

        def run(far, force_in):
            def body(extra, xs):
                k, far_k, drive_k = xs
                forces, ys = child(far_k + extra, drive_k)
                return jax.lax.cond(k == 0, square, lambda _: zeros(half), forces), (forces, ys)

            halves = lambda a: a.reshape((2, half) + a.shape[1:])
            _, (forces, ys) = jax.lax.scan(body, zeros(half), (jnp.arange(2), halves(far), halves(force_in)))
            return forces.reshape((2 * half,) + forces.shape[2:]), ys.reshape((2 * half,) + ys.shape[2:])

        return run

    return segment(int(round(math.log2(total // block))))(zeros(total), drive)[1]


# ----------------------------------------------------------------------------- built-in checks


def drive_forces(n, n_sites, h):
    """A smooth external force ``(n, S, 3)`` (different frequency per site and axis)."""
    t = np.arange(n)[:, None, None] * h
    site, axis = np.arange(n_sites)[None, :, None], np.arange(3)[None, None, :]
    return jnp.asarray(np.sin(2.0 * np.pi * (1.0 + 0.37 * site + 0.11 * axis) * t + site + axis))


def onehot_of(k):
    """``(S, S, D)`` map from a site pair to its separation (as ``jaxion.kernel.simulate``)."""
    return jnp.asarray(np.eye(k.values.shape[2])[np.array(k.pairs)])


def check_pencil():
    """The bound and the pencil on exact samples of 3 channels of a known 7-term kernel: two damped
    pairs, one undamped pair, one decaying real exponential (asserts; returns the errors)."""
    pairs = np.array([-0.3 + 2j * np.pi * 1.7, -0.05 + 2j * np.pi * 4.2, 2j * np.pi * 7.5])
    exponents = np.concatenate([pairs, pairs.conj(), [-0.8]])
    rng = np.random.default_rng(1)
    amplitudes = rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3))
    amplitudes = np.concatenate([amplitudes, amplitudes.conj(), rng.normal(size=(1, 3))])
    t = np.arange(int(round(10.0 / CHECK_DT)) + 1) * CHECK_DT
    check = (np.exp(np.outer(t, exponents)) @ amplitudes).real
    check /= np.abs(check).max()
    samples = check[::FIT_STRIDE]
    sigma, vh, rows = hankel_space(samples)
    # exact data: 7 singular values at O(1), the rest at rounding (~1e-16 of sigma_0)
    assert lower_bound_terms(sigma, rows, 1e-9) == 7, lower_bound_terms(sigma, rows, 1e-9)
    z, _ = pencil_poles(vh, 7)
    found = np.log(z) / (FIT_STRIDE * CHECK_DT)
    key = lambda s: np.lexsort((s.real, s.imag))
    pole_error = float(np.max(np.abs(found[key(found)] - exponents[key(exponents)])) / np.max(np.abs(exponents)))
    # well separated poles from exact data: rounding amplified by the pencil's conditioning (< 1e4)
    assert pole_error < 1e-9, pole_error
    real, pairs_found = split_poles(z)
    coef = fit_amplitudes(real, pairs_found, samples)
    fit_error = max(max_errors(real, pairs_found, coef, check, FIT_STRIDE, 3))
    assert fit_error < 1e-10, fit_error
    return dict(pole_relative_error=pole_error, fit_max_error=fit_error)


def check_histories(table, onehot, h, blocks):
    """SOE recursion = direct sum for an exact 6-term SOE kernel; FFT scheme = direct sum for the real
    ``table`` (asserts; returns the relative differences). Both sides add <= 1000 terms in float64
    (rounding ~1e-13 relative), so 1e-11 separates rounding from a wrong index or lag."""
    rng = np.random.default_rng(2)
    n_sep = table.shape[2]
    z = np.exp((-rng.uniform(0.0, 2.0, 6) + 2j * np.pi * rng.uniform(0.0, 10.0, 6)) * h)
    coef = rng.normal(size=(6, 2, n_sep, 3, 3)) + 1j * rng.normal(size=(6, 2, n_sep, 3, 3))
    n = 600
    exact = np.einsum("rn,rcdxy->ncdxy", np.power.outer(z, np.arange(n + 1)), coef).real
    drive = drive_forces(n, onehot.shape[0], h)
    reference = direct_history(jnp.asarray(exact), onehot, drive, h, n)
    soe = soe_history(jnp.asarray(z), jnp.asarray(coef), onehot, drive, h)
    soe_error = float(jnp.max(jnp.abs(soe - reference)) / jnp.max(jnp.abs(reference)))
    assert soe_error < 1e-11, soe_error
    n = 1000  # not a multiple of the block: the padding is exercised too
    drive = drive_forces(n, onehot.shape[0], h)
    reference = direct_history(table[:n], onehot, drive, h, n)
    fft_error = max(float(jnp.max(jnp.abs(fft_history(table, onehot, drive, h, block) - reference)))
                    for block in blocks) / float(jnp.max(jnp.abs(reference)))
    assert fft_error < 1e-11, fft_error
    return dict(soe_vs_direct=soe_error, fft_vs_direct=fft_error)


# ----------------------------------------------------------------------------- measurements


def build(label, lattice, sites, dt, t1, **options):
    """Tabulate a kernel (uncached) and time it."""
    kernel._CACHE.clear()
    start = time.perf_counter()
    k = kernel.memory_kernel(lattice, np.asarray(sites), dt, t1, **options)
    jax.block_until_ready(k.values)
    seconds = time.perf_counter() - start
    print(f"kernel {label}: {seconds:.1f} s", flush=True)
    return k, seconds


def describe(fit):
    """``recursions (errors)`` of an accepted fit, ``-`` for none."""
    return f"{fit['recursions']} (error K {fit['error_K']:.0e}, K' {fit['error_dK']:.0e})" if fit else "-"


def fit_study(label, k, lattice, t1s, max_rank, size):
    """Lower bounds and fits of one kernel for each ``t1``; prints a line per (t1, tolerance)."""
    stride = int(round(CHECK_DT / k.dt))
    data, owner, scale, count_k = channels(np.asarray(k.values)[::stride])
    omega_max = kernel.highest_frequency(lattice)
    rows, fits = [], {}
    for t1 in t1s:
        start = time.perf_counter()
        results, fits[t1] = fit_soe(data[: int(round(t1 / CHECK_DT)) + 1], count_k, TOLERANCES, max_rank, omega_max)
        for entry in results:
            print(f"  {label} t1={t1:g} eps={entry['tolerance']:.0e}: lower bound {entry['lower_bound_recursions']} "
                  f"recursions; pencil {describe(entry['pencil'])}; Fourier {describe(entry['fourier'])}",
                  flush=True)
        rows.append(dict(t1=t1, omega_max_t1=omega_max * t1, seconds=time.perf_counter() - start, tolerances=results))
    study = dict(kernel=label, channels=int(data.shape[1]), omega_max=omega_max, fits=rows)
    if size is not None:
        study["exact_soe_terms"] = exact_terms(lattice, size)
        study["exact_soe_recursions"] = study["exact_soe_terms"] // 2
    return study, fits, (owner, scale)


def soe_accuracy(k, fits, channel_map, t1):
    """History sums with the fitted SOE against the FFT scheme on the kernel's check grid (``h = CHECK_DT``,
    ``n = t1 / h``): max ``|y_soe - y_fft| / max|y_fft|`` per tolerance."""
    owner, scale = channel_map
    stride = int(round(CHECK_DT / k.dt))
    table = jnp.asarray(np.asarray(k.values)[::stride])
    onehot = onehot_of(k)
    n = int(round(t1 / CHECK_DT))
    drive = drive_forces(n, onehot.shape[0], CHECK_DT)
    reference = fft_history(table, onehot, drive, CHECK_DT, 64)
    out = []
    for eps, (real, pairs, coef) in fits.items():
        z, c = complex_form(real, pairs, coef)
        z = np.exp(np.log(z) / FIT_STRIDE)  # per check-grid step
        amplitudes = expand(c, owner, scale, table.shape[2])
        y = soe_history(jnp.asarray(z), jnp.asarray(amplitudes), onehot, drive, CHECK_DT)
        error = float(jnp.max(jnp.abs(y - reference)) / jnp.max(jnp.abs(reference)))
        out.append(dict(tolerance=eps, t1=t1, steps=n, recursions=len(z), history_relative_error=error))
        print(f"  SOE history sum (eps={eps:.0e}, {len(z)} recursions) vs FFT over {n} steps: {error:.1e}", flush=True)
    return out


def synthetic_soe(recursions, n_sep, h, seed=3):
    """Random stable poles and amplitudes (the cost depends only on their number)."""
    rng = np.random.default_rng(seed)
    z = np.exp((-rng.uniform(0.0, 1.0, recursions) + 2j * np.pi * rng.uniform(0.0, 10.0, recursions)) * h)
    coef = rng.normal(size=(recursions, 2, n_sep, 3, 3)) * (1.0 + 0.0j) / recursions
    return jnp.asarray(z), jnp.asarray(coef)


def padded_steps(n, block):
    """Steps :func:`fft_history` computes for ``n``: ``block 2^L >= n``."""
    return block * 2 ** max(0, math.ceil(math.log2(-(-n // block))))


def per_step(timing, steps):
    return timing["min"] / steps


def time_histories(table, onehot, h, ns, recursions, blocks, repeats):
    """Seconds per step of the three history sums for ``n`` steps (``table`` holds ``K`` to lag ``max n``):
    the FFT scheme for each of ``blocks``; the direct sum in full up to ``DIRECT_FULL`` steps, else its last
    ``DIRECT_PROBE`` steps; the SOE for the ``recursions`` whose run stays below ``SOE_MAX_WORK``."""
    rows = []
    for n in ns:
        drive = drive_forces(n, onehot.shape[0], h)
        ffts = [dict(block=block, steps_computed=padded_steps(n, block), **time_call(
            lambda: fft_history(table, onehot, drive, h, block), repeats)) for block in blocks]
        fft = min(ffts, key=lambda timing: timing["min"] / timing["steps_computed"])
        steps = n if n <= DIRECT_FULL else DIRECT_PROBE
        direct = time_call(lambda: direct_history(table[:n], onehot, drive, h, steps), repeats)
        row = dict(n=n, t1=n * h, fft=ffts, fft_seconds_per_step=per_step(fft, fft["steps_computed"]),
                   fft_block=fft["block"], direct=direct, direct_steps_timed=steps,
                   direct_seconds_per_step=per_step(direct, steps), direct_full_run_seconds=per_step(direct, steps) * n,
                   soe=[])
        print(f"n={n}: FFT {row['fft_seconds_per_step'] * 1e6:.1f} us/step (block {fft['block']}), "
              f"direct {per_step(direct, steps) * 1e6:.1f} us/step"
              + ("" if steps == n else f" (last {steps} steps timed at the full window)"), flush=True)
        for r in (r for r in recursions if r * n <= SOE_MAX_WORK):
            z, coef = synthetic_soe(r, table.shape[2], h)
            soe = time_call(lambda: soe_history(z, coef, onehot, drive, h), repeats)
            row["soe"].append(dict(recursions=r, timing=soe, seconds_per_step=per_step(soe, n)))
            print(f"  SOE {r} recursions: {per_step(soe, n) * 1e6:.1f} us/step", flush=True)
        rows.append(row)
    return rows


def soe_cost_model(rows):
    """Least-squares ``seconds/step = a + b R`` over all SOE timings; ``R*`` where it equals the FFT's."""
    r = np.array([s["recursions"] for row in rows for s in row["soe"]], float)
    t = np.array([s["seconds_per_step"] for row in rows for s in row["soe"]])
    b, a = np.polyfit(r, t, 1)
    for row in rows:
        row["soe_break_even_recursions"] = float((row["fft_seconds_per_step"] - a) / b)
    return dict(seconds_per_step_fixed=float(a), seconds_per_step_per_recursion=float(b))


def time_simulate(k, ns, h):
    """``jaxion.kernel.simulate`` on the Fig. 6 system with the tabulated kernel at the smallest and largest
    ``n`` (block 64; also the direct sum at the smallest, except in a single-n smoke run)."""
    system = System(SimpleCubic(), Gaussian(1.0, 0.5), sites=SITES_3D, mass=(jnp.inf, jnp.inf, 1.0))
    start, velocity = jnp.array([0.0, 0.0, 7.0]), jnp.array([0.0, 0.0, 7.5])
    rows = []
    for n in sorted({ns[0], ns[-1]}):
        for block in (64, None) if n == ns[0] and len(ns) > 1 else (64,):
            run = lambda: kernel.simulate(system, start, velocity, n * h, dt=h, kernel=k, block=block, n_save=2)
            timing = time_call(lambda: run().position_final, 1)  # seconds long; one timed run
            rows.append(dict(n=n, block=block, timing=timing, seconds_per_step=per_step(timing, n)))
            print(f"jaxion.kernel.simulate n={n} block={block}: {per_step(timing, n) * 1e6:.1f} us/step", flush=True)
    return rows


def needed_recursions(study, t1, eps):
    """``(recursions, how)`` of the cheapest SOE found for a kernel at ``(t1, eps)`` (the exact one of a
    periodic lattice included), else the lower bound's."""
    for row in study["fits"]:
        if abs(row["t1"] - t1) < 1e-9:
            entry = next(e for e in row["tolerances"] if e["tolerance"] == eps)
            fits = (("pencil", entry["pencil"]), ("Fourier", entry["fourier"]))
            options = [(fit["recursions"], name) for name, fit in fits if fit]
            if "exact_soe_recursions" in study:
                options.append((study["exact_soe_recursions"], "exact modes"))
            return min(options) if options else (entry["lower_bound_recursions"], "lower bound")
    return None, None


def needed_bound(study, t1, eps):
    """The lower bound on recursions at ``(t1, eps)``."""
    row = next(row for row in study["fits"] if abs(row["t1"] - t1) < 1e-9)
    return next(e for e in row["tolerances"] if e["tolerance"] == eps)["lower_bound_recursions"]


def compare(studies, timing, model, h):
    """SOE cost / FFT cost per step at each timed ``n`` for each kernel and tolerance (``t1 = n h``)."""
    rows = []
    for row in timing:
        for study in studies:
            for eps in TOLERANCES:
                r, how = needed_recursions(study, row["n"] * h, eps)
                if r is None:
                    continue
                bound = needed_bound(study, row["n"] * h, eps)
                cost = lambda count: model["seconds_per_step_fixed"] + model["seconds_per_step_per_recursion"] * count
                rows.append(dict(kernel=study["kernel"], n=row["n"], tolerance=eps, recursions=r, recursions_from=how,
                                 lower_bound_recursions=bound,
                                 soe_over_fft_cost_ratio=cost(r) / row["fft_seconds_per_step"],
                                 lower_bound_soe_over_fft_cost_ratio=cost(bound) / row["fft_seconds_per_step"]))
    return rows


def summary(studies, timing, model, comparison):
    """One paragraph from the measured numbers."""
    last = timing[-1]
    lines = [f"History sum per step at n={last['n']} (8 sites): doubling FFT "
             f"{last['fft_seconds_per_step'] * 1e6:.0f} us, direct {last['direct_seconds_per_step'] * 1e6:.0f} us, "
             f"SOE {model['seconds_per_step_per_recursion'] * 1e6:.2f} us per recursion (fit a + b R, a = "
             f"{model['seconds_per_step_fixed'] * 1e6:.1f} us), i.e. as cheap as the FFT at "
             f"{last['soe_break_even_recursions']:.0f} recursions ({timing[0]['soe_break_even_recursions']:.0f} at "
             f"n={timing[0]['n']})."]
    for study in studies:
        row = study["fits"][-1]
        tight = row["tolerances"][-1]
        best = tight["best_recursions"]
        lines.append(
            f"{study['kernel']} on [0, {row['t1']:g}] (omega_max t1 = {row['omega_max_t1']:g}) to "
            f"{tight['tolerance']:.0e}: "
            f">= {tight['lower_bound_recursions']} recursions (Hankel bound), best fit "
            + (f"{best}" if best else "not found")
            + (f", exact mode sum {study['exact_soe_recursions']}" if "exact_soe_recursions" in study else "") + ".")
    wins = [c for c in comparison if c["soe_over_fft_cost_ratio"] < 1.0]
    lines.append("SOE (cheapest found) cheaper than the FFT: "
                 + ("; ".join(f"{c['kernel']} n={c['n']} eps={c['tolerance']:.0e} ({c['soe_over_fft_cost_ratio']:.2f}x)"
                              for c in wins) or "never") + ".")
    return " ".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run, < 30 s)")
    quick = parser.parse_args().quick
    began = time.perf_counter()
    cubic, chain = SimpleCubic(), Chain()
    if quick:
        setups = [("SimpleCubic L=8", cubic, SITES_3D, 1e-3, 1.0, dict(size=8), (1.0,)),
                  ("Chain infinite (quadrature)", chain, SITES_1D, CHECK_DT, 2.0, dict(size=None), (2.0,))]
        ns, recursions, blocks, repeats, max_rank = (1000,), (8, 32), (64,), 1, 100
    else:
        absorbing = kernel.AbsorbingBoundary(box=32, layer=10)
        setups = [("SimpleCubic L=16", cubic, SITES_3D, 1e-3, 30.0, dict(size=16), (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("SimpleCubic L=24", cubic, SITES_3D, CHECK_DT, 10.0, dict(size=24), (2.0, 10.0)),
                  ("SimpleCubic infinite (AbsorbingBoundary(box=32, layer=10))", cubic, SITES_3D, CHECK_DT, 30.0,
                   dict(boundary=absorbing), (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("Chain infinite (quadrature)", chain, SITES_1D, CHECK_DT, 30.0, dict(size=None),
                   (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("Chain L=64", chain, SITES_1D, CHECK_DT, 30.0, dict(size=64), (2.0, 10.0, 30.0))]
        ns, recursions, blocks, repeats, max_rank = (1000, 10000, 30000), (16, 64, 256), FFT_BLOCKS, 2, MAX_PENCIL_RANK

    checks = dict(pencil=check_pencil())
    print(f"check: synthetic poles recovered to {checks['pencil']['pole_relative_error']:.1e}", flush=True)
    studies, accuracy, builds, timing_kernel = [], [], [], None
    for label, lattice, sites, dt, t1, options, t1s in setups:
        k, seconds = build(label, lattice, sites, dt, t1, **options)
        builds.append(dict(kernel=label, dt=dt, t1=t1, seconds=seconds))
        timing_kernel = timing_kernel or k
        study, fits, channel_map = fit_study(label, k, lattice, t1s, max_rank, options.get("size"))
        studies.append(study)
        fitted = [t for t in t1s if fits[t]]
        if fitted:
            rows = soe_accuracy(k, fits[fitted[-1]], channel_map, fitted[-1])
            accuracy += [dict(kernel=label, **row) for row in rows]

    h = timing_kernel.dt
    table, onehot = timing_kernel.values, onehot_of(timing_kernel)
    checks.update(check_histories(table, onehot, h, blocks))
    print(f"check: SOE vs direct {checks['soe_vs_direct']:.1e}, FFT vs direct {checks['fft_vs_direct']:.1e}",
          flush=True)
    timing = time_histories(table, onehot, h, ns, recursions, blocks, repeats)
    model = soe_cost_model(timing)
    simulate = time_simulate(timing_kernel, ns, h)
    comparison = compare(studies, timing, model, h)
    text = summary(studies, timing, model, comparison)
    print("\n" + text)
    path = write_json("history_quick" if quick else "history", dict(
        quick=quick, seconds=time.perf_counter() - began,
        parameters=dict(tolerances=TOLERANCES, check_dt=CHECK_DT, fit_dt=FIT_STRIDE * CHECK_DT,
                        max_pencil_rank=max_rank,
                        timing_dt=h, timing_sites=len(SITES_3D), feedback_kappa=KAPPA, fft_blocks=blocks),
        checks=checks, kernels=builds, fits=studies, soe_history_accuracy=accuracy, history_timing=timing,
        soe_cost_model=model, simulate=simulate, comparison=comparison, summary=text))
    print(f"wrote {path} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
