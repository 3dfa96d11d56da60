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

Part 2, cost per step of the history sums. The library's two (the doubling-block FFT sum, ``block = 64``,
and the direct sum, ``block = None``) are timed through ``jaxion.kernel.simulate`` itself on the Fig. 6
system (``jaxion.experiments.fig6_setup``), steps of ``h = 1e-3`` (:func:`time_simulate`): the FFT sum per
step from the run times for ``n`` and ``n / 2`` steps, ``n = 1e3, 1e4, 3e4`` (``t1 = 1, 10, 30`` periods;
the per-call cost cancels); the direct sum (every step sums its whole window of ``n + 1`` lags) at
``n = 20, 100, 250, 500`` (windows that stay in cache), fitted as ``T(n) = c0 + rest n + per_lag n (n + 1)``
seconds per call, where ``rest`` is the step without its history sum, so the FFT sum costs the simulate step
less ``rest``. The SOE recursion, which the library does not have, is timed alone (jitted ``lax.scan``,
float64, the same ``(2, D, 3, 3)`` kernel blocks and site map as ``jaxion.kernel``, 8 sites, a feedback force
``F_n = drive_n - kappa y_n`` so that it must be causal) for 16, 64 and 256 recursions (up to 3e6
recursion-steps per run; its cost is linear in their number, fitted as ``a + b R``). The SOE cost of each
kernel and tolerance at ``t1 = n h`` then follows from the recursions its fit needed, against the FFT sum's.

Built-in checks (assertions): the pencil recovers known exponents of a synthetic kernel; the SOE
recursion with an exact synthetic SOE kernel reproduces the exact history sum (one FFT convolution) to
rounding; ``jaxion.kernel.simulate`` gives the same trajectory with the FFT and the direct sum.

``--quick`` (< 30 s) runs tiny sizes as a smoke test and writes ``history_quick.json``; the full run
(< 5 min on 2 CPU cores) writes ``history.json``; both into ``_common.results_dir()``:
``out/benchmarks/results/``, git-ignored.
"""

import os

# before NumPy loads OpenBLAS: the fits' small dense solves ran ~30x slower threaded on 2 shared cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
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
from jaxion.experiments import FIG6_SITES, fig6_setup  # noqa: E402
from jaxion.lattice import Chain, SimpleCubic  # noqa: E402

TOLERANCES = (1e-4, 1e-6, 1e-8)
CHECK_DT = 5e-3  # grid on which fit errors are measured (20 points per period of omega_max = 10)
FIT_STRIDE = 5  # fit samples every FIT_STRIDE check points: dt = 0.025, 40 per period of omega_max
MAX_PENCIL_RANK = 300  # eig of a rank x rank pencil per candidate; larger ranks: lower bound only
SITES_3D = FIG6_SITES
SITES_1D = [(j,) for j in range(8)]
# (period / t1, highest frequency / omega_max) of the Fourier-extension fits, cheapest first
FOURIER_CANDIDATES = ((1.25, 1.02), (1.5, 1.02), (2.0, 1.02), (2.0, 1.1), (3.0, 1.2), (4.0, 1.5))
BLOCK = 64  # jaxion.kernel.simulate's default block of the doubling-FFT history sum
SOE_MAX_WORK = 3e6  # recursions x steps of the longest SOE timing run (its cost per step does not depend on n)
KAPPA = 5.0  # feedback spring on the sites in the SOE timing runs (stable: < k1 = 15)


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


# ----------------------------------------------------------------------------- the SOE recursion and a reference


def site_sum(kern, onehot, forces):
    """``sum_b K_ab F_b`` summed over the leading axis: ``kern (R, 2, D, 3, 3)``, ``onehot (S, S, D)``,
    ``forces (R, S, 3)`` -> ``(2, S, 3)`` (the contraction ``jaxion.kernel`` uses)."""
    return jnp.einsum("rcdxy,abd,rby->cax", kern, onehot, forces)


@jax.jit
def soe_history(z, coef, onehot, drive, h, kappa):
    """``y_n = h Re sum_k c_k H_k(n)``, ``H_k(n+1) = z_k (H_k(n) + F_n)``, ``F_n = drive_n - kappa y_n[0]``
    (with ``kappa != 0`` each force depends on the sum so far, as in a simulation: the scheme must be causal).

    Args:
        z: ``(R,)`` complex poles per step; coef: ``(R, 2, D, 3, 3)`` complex amplitudes of ``K``, ``K'``;
        onehot: ``(S, S, D)`` pair -> separation; drive: ``(n, S, 3)``; h: step; kappa: feedback spring.

    Returns:
        ``(n, 2, S, 3)``.
    """
    stacked = jnp.concatenate([coef.real, -coef.imag])  # Re(c H) = c_r H_r - c_i H_i

    def step(state, force_in):
        y = h * site_sum(stacked, onehot, jnp.concatenate([state.real, state.imag]))
        force = force_in - kappa * y[0]
        return z[:, None, None] * (state + force[None]), y

    return jax.lax.scan(step, jnp.zeros((len(z),) + drive.shape[1:], complex), drive)[1]


def convolution_history(table, onehot, drive, h):
    """The open-loop history sum ``y_n = h sum_{0 <= m < n} K_{n-m} F_m``, ``n < N = len(drive)``, all at
    once by the convolution theorem (``K_0`` set to 0, zero-padded FFTs of length ``2 N``): the reference
    of the checks. ``table (>= N, 2, D, 3, 3)``, ``onehot (S, S, D)``, ``drive (N, S, 3)`` -> ``(N, 2, S, 3)``."""
    n = drive.shape[0]
    lagged = np.asarray(table[:n]).copy()
    lagged[0] = 0.0
    spectrum = np.fft.rfft(lagged, n=2 * n, axis=0)
    x = np.fft.rfft(np.asarray(drive), n=2 * n, axis=0)
    return h * np.fft.irfft(np.einsum("wcdxy,abd,wby->wcax", spectrum, np.asarray(onehot), x), n=2 * n, axis=0)[:n]


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


def check_soe_history(n_sep, onehot, h):
    """The SOE recursion (``kappa = 0``) against :func:`convolution_history` for an exact 6-term SOE kernel
    (asserts; returns the relative difference). Both add <= 600 terms in float64 (rounding ~1e-13 relative),
    so 1e-11 separates rounding from a wrong index or lag."""
    rng = np.random.default_rng(2)
    z = np.exp((-rng.uniform(0.0, 2.0, 6) + 2j * np.pi * rng.uniform(0.0, 10.0, 6)) * h)
    coef = rng.normal(size=(6, 2, n_sep, 3, 3)) + 1j * rng.normal(size=(6, 2, n_sep, 3, 3))
    n = 600
    exact = np.einsum("rn,rcdxy->ncdxy", np.power.outer(z, np.arange(n + 1)), coef).real
    drive = drive_forces(n, onehot.shape[0], h)
    reference = convolution_history(exact, onehot, drive, h)
    soe = np.asarray(soe_history(jnp.asarray(z), jnp.asarray(coef), onehot, drive, h, 0.0))
    error = float(np.max(np.abs(soe - reference)) / np.max(np.abs(reference)))
    assert error < 1e-11, error
    return error


# ----------------------------------------------------------------------------- measurements


def build(label, lattice, sites, dt, t1, **options):
    """Tabulate a kernel (``memory_kernel`` without a cache: built afresh) and time it."""
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
    """History sums with the fitted SOE against the exact one (:func:`convolution_history`, open loop) on the
    kernel's check grid (``h = CHECK_DT``, ``n = t1 / h``): max ``|y_soe - y| / max|y|`` per tolerance."""
    owner, scale = channel_map
    stride = int(round(CHECK_DT / k.dt))
    table = jnp.asarray(np.asarray(k.values)[::stride])
    onehot = onehot_of(k)
    n = int(round(t1 / CHECK_DT))
    drive = drive_forces(n, onehot.shape[0], CHECK_DT)
    reference = convolution_history(table, onehot, drive, CHECK_DT)
    out = []
    for eps, (real, pairs, coef) in fits.items():
        z, c = complex_form(real, pairs, coef)
        z = np.exp(np.log(z) / FIT_STRIDE)  # per check-grid step
        amplitudes = expand(c, owner, scale, table.shape[2])
        y = np.asarray(soe_history(jnp.asarray(z), jnp.asarray(amplitudes), onehot, drive, CHECK_DT, 0.0))
        error = float(np.max(np.abs(y - reference)) / np.max(np.abs(reference)))
        out.append(dict(tolerance=eps, t1=t1, steps=n, recursions=len(z), history_relative_error=error))
        print(f"  SOE history sum (eps={eps:.0e}, {len(z)} recursions) vs exact over {n} steps: {error:.1e}",
              flush=True)
    return out


def synthetic_soe(recursions, n_sep, h, seed=3):
    """Random stable poles and amplitudes (the cost depends only on their number)."""
    rng = np.random.default_rng(seed)
    z = np.exp((-rng.uniform(0.0, 1.0, recursions) + 2j * np.pi * rng.uniform(0.0, 10.0, recursions)) * h)
    coef = rng.normal(size=(recursions, 2, n_sep, 3, 3)) * (1.0 + 0.0j) / recursions
    return jnp.asarray(z), jnp.asarray(coef)


def per_step(timing, steps):
    return timing["min"] / steps


def time_simulate(k, ns, direct_ns, repeats):
    """The library's history sums, timed through ``jaxion.kernel.simulate`` on the Fig. 6 system
    (``jaxion.experiments.fig6_setup``) with the tabulated kernel ``k`` (its step ``h``). A call for ``n``
    steps costs ``T(n) = c0 + n s(n)``: ``c0`` per call (argument checks, table slicing, dispatch), ``s`` per step
    (process time, as for the SOE, :func:`time_soe`: less sensitive to other processes on the cores).

    * The doubling-block FFT sum (``block = BLOCK``): ``T`` at ``n`` and ``n / 2`` for each of ``ns``;
      ``s = (T(n) - T(n / 2)) / (n / 2)`` is the step's cost over the second half (``c0`` cancels).
    * The direct sum (``block = None``: every step sums its whole window of ``n + 1`` lags) at each of
      ``direct_ns`` (four or more, from a few steps, which fix ``c0``, to windows that still fit in cache,
      where the cost per lag is constant), fitted as ``T(n) = c0 + rest n + per_lag n (n + 1)``. ``rest`` is the
      step without its history sum (forces, quadrature end corrections, energy, saving), so the FFT history
      sum costs ``s - rest`` per step (``fft_seconds_per_step`` of :func:`history_costs`).
    * A check: at ``n = direct_ns[-1]`` the two sums give the same site displacements to rounding
      (``max |rho_fft - rho_direct| / max |rho|``, asserted below 1e-11).

    Returns:
        dict with ``fft`` rows (``n``, ``timing``, ``half_timing``, ``seconds_per_step``), ``direct`` rows
        (``n``, ``timing``), the fit's ``call_seconds`` (``c0``), ``rest_seconds_per_step`` and
        ``seconds_per_lag``, and ``fft_vs_direct``.
    """
    setup = fig6_setup()
    h = k.dt

    def run(n, block, save_sites=False):
        return kernel.simulate(setup.system, setup.position, setup.velocity, n * h, dt=h, kernel=k, block=block,
                               n_save=2, save_sites=save_sites)

    def timed(n, block):
        return time_call(lambda: run(n, block).position_final, repeats, clock=time.process_time)

    fft = []
    for n in ns:
        whole, half = timed(n, BLOCK), timed(n // 2, BLOCK)
        fft.append(dict(n=n, block=BLOCK, timing=whole, half_timing=half,
                        seconds_per_step=(whole["min"] - half["min"]) / (n - n // 2)))
        print(f"jaxion.kernel.simulate block={BLOCK} n={n}: {fft[-1]['seconds_per_step'] * 1e6:.1f} us/step "
              f"(steps {n // 2}-{n})", flush=True)
    direct = [dict(n=n, block=None, timing=timed(n, None)) for n in direct_ns]
    n = np.array(direct_ns, float)
    design = np.stack([np.ones_like(n), n, n * (n + 1)], axis=1)
    call, rest, per_lag = np.linalg.lstsq(design, [row["timing"]["min"] for row in direct], rcond=None)[0]
    fast, slow = (run(direct_ns[-1], block, save_sites=True).site_displacement for block in (BLOCK, None))
    deviation = float(jnp.max(jnp.abs(fast - slow)) / jnp.max(jnp.abs(slow)))
    assert deviation < 1e-11, deviation
    print(f"jaxion.kernel.simulate block=None, n={direct_ns}: {call * 1e3:.1f} ms per call, {rest * 1e6:.1f} us per "
          f"step without the history sum, {per_lag * 1e9:.1f} ns per lag; check: FFT vs direct {deviation:.1e}",
          flush=True)
    return dict(fft=fft, direct=direct, call_seconds=float(call), rest_seconds_per_step=float(rest),
                seconds_per_lag=float(per_lag), fft_vs_direct=deviation)


def time_soe(onehot, h, ns, recursions, repeats):
    """Seconds per step (process time) of the SOE recursion (synthetic poles, feedback ``KAPPA``) for ``n``
    steps, each of ``ns``, for the ``recursions`` whose run stays below ``SOE_MAX_WORK`` recursion-steps."""
    rows = []
    for n in ns:
        drive = drive_forces(n, onehot.shape[0], h)
        row = dict(n=n, t1=n * h, soe=[])
        for r in (r for r in recursions if r * n <= SOE_MAX_WORK):
            z, coef = synthetic_soe(r, onehot.shape[2], h)
            soe = time_call(lambda: soe_history(z, coef, onehot, drive, h, KAPPA), repeats, clock=time.process_time)
            row["soe"].append(dict(recursions=r, timing=soe, seconds_per_step=per_step(soe, n)))
            print(f"n={n}: SOE {r} recursions: {per_step(soe, n) * 1e6:.1f} us/step", flush=True)
        rows.append(row)
    return rows


def soe_cost_model(rows):
    """Least-squares ``seconds/step = a + b R`` over all SOE timings."""
    r = np.array([s["recursions"] for row in rows for s in row["soe"]], float)
    t = np.array([s["seconds_per_step"] for row in rows for s in row["soe"]])
    b, a = np.polyfit(r, t, 1)
    return dict(seconds_per_step_fixed=float(a), seconds_per_step_per_recursion=float(b))


def history_costs(soe_rows, simulated, model):
    """Per ``n``: the library's FFT and direct history sums per step (:func:`time_simulate`: the simulate step
    minus ``rest``; the direct sum at its window ``n + 1``, from the fit), and ``R*``, the recursions at which
    the SOE (``a + b R``) costs as much as the FFT sum."""
    fft = {row["n"]: row["seconds_per_step"] for row in simulated["fft"]}
    rows = []
    for row in soe_rows:
        history = fft[row["n"]] - simulated["rest_seconds_per_step"]
        rows.append(dict(row, simulate_seconds_per_step=fft[row["n"]], fft_seconds_per_step=history,
                         direct_seconds_per_step=simulated["seconds_per_lag"] * (row["n"] + 1),
                         soe_break_even_recursions=(history - model["seconds_per_step_fixed"])
                         / model["seconds_per_step_per_recursion"]))
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


def summary(studies, timing, model, comparison, rest):
    """One paragraph from the measured numbers (``rest``: the simulate step without its history sum)."""
    last = timing[-1]
    lines = [f"History sum per step at n={last['n']} (8 sites; jaxion.kernel.simulate's step "
             f"{last['simulate_seconds_per_step'] * 1e6:.0f} us less {rest * 1e6:.0f} us "
             f"without it): doubling FFT {last['fft_seconds_per_step'] * 1e6:.0f} us, direct "
             f"{last['direct_seconds_per_step'] * 1e6:.0f} us, "
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
        ns, direct_ns, recursions, repeats, max_rank = (1000,), (20, 100, 250, 500), (8, 32), 1, 100
    else:
        absorbing = kernel.AbsorbingBoundary(box=32, layer=10)
        setups = [("SimpleCubic L=16", cubic, SITES_3D, 1e-3, 30.0, dict(size=16), (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("SimpleCubic L=24", cubic, SITES_3D, CHECK_DT, 10.0, dict(size=24), (2.0, 10.0)),
                  ("SimpleCubic infinite (AbsorbingBoundary(box=32, layer=10))", cubic, SITES_3D, CHECK_DT, 30.0,
                   dict(boundary=absorbing), (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("Chain infinite (quadrature)", chain, SITES_1D, CHECK_DT, 30.0, dict(size=None),
                   (1.0, 2.0, 5.0, 10.0, 30.0)),
                  ("Chain L=64", chain, SITES_1D, CHECK_DT, 30.0, dict(size=64), (2.0, 10.0, 30.0))]
        ns, direct_ns, recursions, repeats = (1000, 10000, 30000), (20, 100, 250, 500), (16, 64, 256), 2
        max_rank = MAX_PENCIL_RANK

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
    onehot = onehot_of(timing_kernel)
    checks["soe_vs_exact"] = check_soe_history(timing_kernel.values.shape[2], onehot, h)
    print(f"check: SOE recursion vs exact history sum {checks['soe_vs_exact']:.1e}", flush=True)
    simulated = time_simulate(timing_kernel, ns, direct_ns, max(repeats, 3))  # short runs: repeat
    checks["fft_vs_direct"] = simulated["fft_vs_direct"]
    soe_rows = time_soe(onehot, h, ns, recursions, repeats)
    model = soe_cost_model(soe_rows)
    timing = history_costs(soe_rows, simulated, model)
    comparison = compare(studies, timing, model, h)
    text = summary(studies, timing, model, comparison, simulated["rest_seconds_per_step"])
    print("\n" + text)
    path = write_json("history_quick" if quick else "history", dict(
        quick=quick, seconds=time.perf_counter() - began,
        parameters=dict(tolerances=TOLERANCES, check_dt=CHECK_DT, fit_dt=FIT_STRIDE * CHECK_DT,
                        max_pencil_rank=max_rank,
                        timing_dt=h, timing_sites=len(SITES_3D), feedback_kappa=KAPPA, fft_block=BLOCK),
        checks=checks, kernels=builds, fits=studies, soe_history_accuracy=accuracy, history_timing=timing,
        soe_cost_model=model, simulate=simulated, comparison=comparison, summary=text))
    print(f"wrote {path} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
