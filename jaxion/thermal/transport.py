"""Transport observables of thermal trajectories (physics.md section 5.5).

Units (the follow-up paper's, physics.md 5.6): lengths in Å, times in ps, energies in meV, forces
in meV/Å, masses in meV ps^2/Å^2, temperatures in kelvin. Hence diffusion coefficients come out in
Å^2/ps (``1 Å^2/ps = 1e-4 cm^2/s``), mobilities (velocity per force) in Å^2/(ps meV) and
conductivities in S/cm.

Error bars always come from independent blocks, never from correlated samples: the blocks are
the independent trajectories of an ensemble (or, for one long trajectory, contiguous groups of
segments much longer than its correlation time). Each block gives one estimate; the result is
the mean of the block estimates and its standard error ``std(ddof=1) / sqrt(n)``. With ``n``
blocks that standard error is itself uncertain by about ``1 / sqrt(2 (n - 1))`` (Student's
``t`` with ``n - 1`` degrees of freedom): 2 blocks is the least that gives an error at all, 8 or
more are recommended, and a confidence interval from few blocks should use the ``t`` quantile.

    block_mean                      mean and standard error of independent blocks
    mean_squared_displacement       MSD tensor <dR_a dR_b>(t) over all time origins
    diffusion_tensor                D_ab = slope of <dR_a dR_b> / 2, block errors
    einstein_mobility               u = D / (k_B T)
    drift_mobility                  u = <dR . F> / (t |F|^2) under a constant force F
    arrhenius_fit                   ln D = ln D0 - E_a / (k_B T), weighted least squares
    nernst_einstein_conductivity    sigma = n (z e)^2 D / (k_B T), S/cm
    kinetic_temperature             <M v_a^2 / 2> per axis and the implied temperature

The array work is in ``jax.numpy`` and jit-compiled; the arguments that fix array shapes (``dt``,
``max_lag``, ``fit_window``, ``segment``, ``groups``) must be concrete numbers. Inputs are
checked at the boundary (shape, finiteness, positivity, enough blocks) with a ``ValueError``
naming the argument; the checks are skipped for traced values, so the functions stay usable
under ``jax.jit`` and ``jax.vmap`` where their shapes allow it. :func:`arrhenius_fit` is a
small NumPy fit of a handful of numbers.
"""

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from ..units import BOLTZMANN_MEV

CM2_PER_S_PER_A2_PER_PS = 1e-4  # 1 Å^2/ps = 1e-16 cm^2 / 1e-12 s
_LAG_ROUNDING = 1e-9  # times within this fraction of dt of a saved time count as that time


class Estimate(NamedTuple):
    """A value with its standard error (``error`` is ``None`` when no error was given).

    Unpacks as ``value, error = estimate``.
    """

    value: jax.Array
    error: jax.Array | None


class MeanSquaredDisplacement(eqx.Module):
    """Time-origin-averaged displacement tensor of ``B`` trajectories at ``K`` lags.

    Attributes:
        lags: ``(K,)`` lag times ``k dt`` in ps, ``k = 0 .. max_lag``.
        tensor: ``(B, K, 3, 3)`` ``<dR_a dR_b>(t)`` in Å^2, per trajectory, averaged over the
            ``T - k`` time origins of each lag.
    """

    lags: jax.Array
    tensor: jax.Array

    @property
    def msd(self):
        """``(B, K)`` mean-squared displacement ``<|dR|^2>(t)`` (trace of ``tensor``), Å^2."""
        return jnp.trace(self.tensor, axis1=-2, axis2=-1)


class DiffusionEstimate(eqx.Module):
    """Diffusion tensor from block-wise MSD fits (see :func:`diffusion_tensor`).

    Attributes:
        D: ``(3, 3)`` mean of the block estimates ``D_ab``, Å^2/ps.
        D_error: ``(3, 3)`` standard error of ``D`` over the blocks, Å^2/ps.
        D_scalar: ``tr D / 3``, Å^2/ps.
        D_scalar_error: its standard error, from the blocks' own traces (so correlations between
            the components are included), Å^2/ps.
        blocks: ``(n, 3, 3)`` the ``n`` independent block estimates, Å^2/ps.
        lags: ``(K,)`` lag times of ``msd_tensor`` in ps (0 up to the end of the fit window).
        msd_tensor: ``(n, K, 3, 3)`` each block's averaged ``<dR_a dR_b>(t)`` in Å^2.
        fit_window: ``(t_min, t_max)`` in ps, the lags fitted.
    """

    D: jax.Array
    D_error: jax.Array
    D_scalar: jax.Array
    D_scalar_error: jax.Array
    blocks: jax.Array
    lags: jax.Array
    msd_tensor: jax.Array
    fit_window: tuple[float, float] = eqx.field(static=True)

    @property
    def n_blocks(self):
        """Number of independent blocks."""
        return self.blocks.shape[0]

    @property
    def D_cm2_per_s(self):
        """``D`` in cm^2/s."""
        return self.D * CM2_PER_S_PER_A2_PER_PS

    @property
    def D_error_cm2_per_s(self):
        """``D_error`` in cm^2/s."""
        return self.D_error * CM2_PER_S_PER_A2_PER_PS

    @property
    def D_scalar_cm2_per_s(self):
        """``D_scalar`` in cm^2/s."""
        return self.D_scalar * CM2_PER_S_PER_A2_PER_PS

    @property
    def D_scalar_error_cm2_per_s(self):
        """``D_scalar_error`` in cm^2/s."""
        return self.D_scalar_error * CM2_PER_S_PER_A2_PER_PS


class ArrheniusFit(NamedTuple):
    """Result of :func:`arrhenius_fit`.

    Attributes:
        activation_energy: ``E_a`` in meV.
        activation_energy_error: its standard error, meV.
        prefactor: ``D0`` in the units of the diffusion data (Å^2/ps).
        prefactor_error: its standard error (linear propagation, ``D0 * err(ln D0)``).
        chi2_per_dof: ``chi^2 / (n - 2)``; NaN for two temperatures (no degree of freedom left).
        covariance: ``(2, 2)`` covariance of ``(ln D0, E_a)`` (``E_a`` in meV).
        note: empty, or why ``chi2_per_dof`` is NaN.
    """

    activation_energy: float
    activation_energy_error: float
    prefactor: float
    prefactor_error: float
    chi2_per_dof: float
    covariance: np.ndarray
    note: str


class KineticTemperature(NamedTuple):
    """Result of :func:`kinetic_temperature`.

    Attributes:
        energy: ``(3,)`` mean kinetic energy per degree of freedom ``<M v_a^2 / 2>``, meV.
        energy_error: ``(3,)`` its block standard error, meV.
        temperature_axes: ``(3,)`` ``2 <M v_a^2 / 2> / k_B`` per axis, K.
        temperature_axes_error: ``(3,)`` its block standard error, K.
        temperature: ``<M |v|^2> / (3 k_B)``, K.
        temperature_error: its standard error from the blocks' own three-axis temperatures, K.
    """

    energy: jax.Array
    energy_error: jax.Array
    temperature_axes: jax.Array
    temperature_axes_error: jax.Array
    temperature: jax.Array
    temperature_error: jax.Array


# --------------------------------------------------------------------------------------------
# checks at the boundary


def _require_blocks(name, n):
    if n < 2:
        raise ValueError(
            f"{name} must hold at least 2 independent blocks to give an error bar (8 or more are "
            f"recommended), got {n}"
        )


def _require_array(name, value, shape):
    """Shape check, then NaN / infinity check; returns the value as a float array."""
    _checks.require_shape(name, value, shape)
    value = jnp.asarray(value, dtype=float)
    if _checks.is_concrete(value) and not bool(np.all(np.isfinite(np.asarray(value)))):
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return value


def _require_concrete_positive(name, value):
    if not _checks.is_concrete(value) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be a concrete scalar (it fixes array shapes), got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _require_temperature(name, value):
    value = jnp.asarray(value, dtype=float)
    _checks.require_positive(f"{name} (K)", value)
    return value


def _require_error(name, value):
    if value is None:
        return None
    value = jnp.asarray(value, dtype=float)
    _checks.require_positive(name, value, allow_zero=True)
    return value


# --------------------------------------------------------------------------------------------
# block statistics


@functools.partial(jax.jit, static_argnames="axis")
def _block_mean(samples, axis):
    n = samples.shape[axis]
    return jnp.mean(samples, axis=axis), jnp.std(samples, axis=axis, ddof=1) / jnp.sqrt(n)


def block_mean(samples, axis=0):
    """Mean and standard error of independent block estimates.

    ``mean = sum_i x_i / n``, ``error = sqrt(sum_i (x_i - mean)^2 / (n - 1)) / sqrt(n)``.

    The samples along ``axis`` must already be independent (trajectories, or blocks longer than
    the correlation time); correlated samples give an error bar that is too small.

    Args:
        samples: array whose ``axis`` holds ``n >= 2`` blocks (8 or more recommended).
        axis: the block axis.

    Returns:
        :class:`Estimate` ``(mean, error)``, each of ``samples``' shape without ``axis``.
    """
    samples = jnp.asarray(samples, dtype=float)
    if samples.ndim == 0 or not -samples.ndim <= axis < samples.ndim:
        raise ValueError(f"samples must have an axis {axis}, got shape {samples.shape}")
    _require_blocks(f"samples (axis {axis})", samples.shape[axis])
    _checks.require_finite("samples", samples)
    return Estimate(*_block_mean(samples, axis % samples.ndim))


# --------------------------------------------------------------------------------------------
# mean-squared displacement and diffusion


@functools.partial(jax.jit, static_argnames="max_lag")
def _msd_tensor(positions, max_lag):
    """``(..., T, 3) -> (..., max_lag + 1, 3, 3)``: ``<dR_a dR_b>`` over all origins, per lag.

    Direct O(T K) sums, vectorised over origins (and leading axes), mapped over lags; exact to
    rounding, with no large-number cancellation (displacements are formed first).
    """
    n_times = positions.shape[-2]
    origins = jnp.arange(n_times)

    def one_lag(lag):
        step = jnp.roll(positions, -lag, axis=-2) - positions  # row t: R(t + lag) - R(t), valid t < T - lag
        weight = jnp.where(origins < n_times - lag, 1.0, 0.0) / (n_times - lag)
        return jnp.einsum("...ta,...tb,t->...ab", step, step, weight)

    tensor = jax.lax.map(one_lag, jnp.arange(max_lag + 1))  # (K, ..., 3, 3)
    return jnp.moveaxis(tensor, 0, -3)


def mean_squared_displacement(positions, dt, max_lag):
    """Displacement tensor averaged over all time origins of each trajectory.

        tensor[b, k]_ab = 1 / (T - k) sum_{t=0}^{T-k-1} dR_a dR_b,   dR = R_b(t + k) - R_b(t)
        msd[b, k] = tr tensor[b, k] = <|R(t0 + k dt) - R(t0)|^2>_t0

    Args:
        positions: ``(B, T, 3)`` unwrapped positions (Å) of ``B`` trajectories at ``T`` times
            spaced ``dt``.
        dt: spacing of the saved times, ps (concrete).
        max_lag: largest lag in steps of ``dt`` (concrete integer, ``1 <= max_lag <= T - 1``).

    Returns:
        :class:`MeanSquaredDisplacement` with ``lags (K,)`` (ps), ``tensor (B, K, 3, 3)`` and
        ``msd (B, K)`` (Å^2), ``K = max_lag + 1`` (lag 0 included).
    """
    positions = _require_array("positions", positions, (None, None, 3))
    dt = _require_concrete_positive("dt", dt)
    _checks.require_integer("max_lag", max_lag, 1, positions.shape[1] - 1)
    lags = dt * jnp.arange(max_lag + 1, dtype=float)
    return MeanSquaredDisplacement(lags=lags, tensor=_msd_tensor(positions, max_lag))


@functools.partial(jax.jit, static_argnames=("first", "last", "layout"))
def _diffusion(positions, dt, first, last, layout):
    """Block MSD tensors, block slopes / 2 and their block means (see :func:`diffusion_tensor`).

    ``layout`` is ``None`` (one block per trajectory, all origins) or ``(S, n, P)``: ``n`` blocks
    of ``P`` consecutive segments of ``S`` steps (consecutive segments share their end point),
    taken in order from the ``(B, T, 3)`` positions (``n = B`` for ``B > 1``, ``B = 1`` otherwise).
    """
    if layout is None:
        tensor = _msd_tensor(positions, last)  # (B, K, 3, 3)
    else:
        steps, n_blocks, per_block = layout
        per_traj = n_blocks * per_block // positions.shape[0]
        index = steps * np.arange(per_traj)[:, None] + np.arange(steps + 1)[None, :]
        cut = positions[:, index, :].reshape(-1, steps + 1, 3)  # (B C, S + 1, 3)
        tensor = _msd_tensor(cut, last)
        tensor = jnp.mean(tensor.reshape((n_blocks, per_block) + tensor.shape[1:]), axis=1)
    lags = dt * jnp.arange(last + 1, dtype=float)
    t = lags[first : last + 1]
    centred = t - jnp.mean(t)
    weights = centred / jnp.sum(centred**2)  # slope = sum_k w_k y_k (sum_k w_k = 0 removes the intercept)
    blocks = jnp.einsum("k,nkab->nab", weights, tensor[:, first : last + 1]) / 2.0
    D, D_error = _block_mean(blocks, 0)
    D_scalar, D_scalar_error = _block_mean(jnp.trace(blocks, axis1=-2, axis2=-1) / 3.0, 0)
    return D, D_error, D_scalar, D_scalar_error, blocks, lags, tensor


def diffusion_tensor(positions, dt, fit_window, segment=None, groups=8):
    """Diffusion tensor from the slope of the MSD tensor, with block errors.

        D_ab = (1/2) d<dR_a dR_b>/dt,   fitted by a least-squares line (slope and intercept) to
        <dR_a dR_b>(t) at the saved lags t_min <= t <= t_max, separately in each block;
        D = mean over blocks, D_error = block standard error, D_scalar = tr D / 3.

    Blocks. Without ``segment`` each of the ``B >= 2`` trajectories is one block and its MSD is
    averaged over all time origins. With ``segment`` (the follow-up paper's protocol: 12 ps
    segments fitted over 1-12 ps) each trajectory is cut into consecutive non-overlapping
    segments of ``segment`` ps, the MSD is computed within each segment (over its own time
    origins) and averaged over the segments. Successive segments of one trajectory are
    correlated (the ion's velocity and its place in the landscape carry over), so they are not
    independent blocks: for ``B >= 2`` the trajectories are the blocks (the segments of one
    trajectory averaged inside its block); for ``B = 1`` the trajectory's segments are split into
    ``groups`` contiguous groups of equal size (trailing segments that do not fill a group are
    dropped), which are the blocks. That assumes each group is much longer than the correlation
    time, so that the groups are nearly independent; a single trajectory without ``segment``
    gives no error bar and is refused.

    Since the fit is linear in the data, the fit of a block's averaged MSD equals the average of
    the fits of its segments. The scalar error is the standard error of the blocks' own traces
    ``tr D_block / 3``, not a propagation of the component errors (which are correlated).

    Args:
        positions: ``(B, T, 3)`` unwrapped positions, Å, at ``T`` times spaced ``dt``.
        dt: spacing of the saved times, ps (concrete).
        fit_window: ``(t_min, t_max)`` in ps, ``0 <= t_min < t_max``, at most the longest lag
            (``(T - 1) dt``, or ``segment``); at least 2 saved lags must fall inside.
        segment: segment length in ps, a whole number of steps ``dt``, or ``None``.
        groups: number of blocks when ``B = 1`` and ``segment`` is given (>= 2; 8 or more
            recommended).

    Returns:
        :class:`DiffusionEstimate` (``D``, ``D_error`` ``(3, 3)``, ``D_scalar``,
        ``D_scalar_error``, Å^2/ps, with ``*_cm2_per_s`` properties in cm^2/s; also the
        ``blocks`` and their averaged ``msd_tensor``).
    """
    positions = _require_array("positions", positions, (None, None, 3))
    dt = _require_concrete_positive("dt", dt)
    n_traj, n_times = positions.shape[:2]
    if np.shape(fit_window) != (2,):
        raise ValueError(f"fit_window must be a pair (t_min, t_max) in ps, got {fit_window!r}")
    t_min, t_max = (float(t) for t in fit_window)
    if not (math.isfinite(t_min) and math.isfinite(t_max) and 0 <= t_min < t_max):
        raise ValueError(f"fit_window must satisfy 0 <= t_min < t_max (ps), got {fit_window!r}")

    if segment is None:
        if n_traj < 2:
            raise ValueError(
                "positions must hold at least 2 independent trajectories (blocks) for an error bar "
                f"(8 or more recommended), got {n_traj}; for one long trajectory pass `segment`"
            )
        span_steps, span_name = n_times - 1, f"the trajectory length (T - 1) dt = {(n_times - 1) * dt} ps"
    else:
        segment = _require_concrete_positive("segment", segment)
        span_steps = round(segment / dt)
        if span_steps < 1 or abs(span_steps * dt - segment) > _LAG_ROUNDING * dt:
            raise ValueError(f"segment must be a whole number of steps dt = {dt} ps, got {segment}")
        span_name = f"segment = {segment} ps"

    first = math.ceil(t_min / dt - _LAG_ROUNDING)
    last = math.floor(t_max / dt + _LAG_ROUNDING)
    if last > span_steps:
        raise ValueError(f"fit_window {fit_window!r} ends after the longest lag, {span_name}")
    if last - first + 1 < 2:
        raise ValueError(f"fit_window {fit_window!r} holds fewer than 2 saved lags (dt = {dt} ps)")

    if segment is None:
        layout = None
    else:
        count = (n_times - 1) // span_steps
        if count < 1:
            raise ValueError(f"segment = {segment} ps is longer than the trajectories, {(n_times - 1) * dt} ps")
        if n_traj == 1:
            _checks.require_integer("groups", groups, 2)
            if count < groups:
                raise ValueError(
                    f"one trajectory gives {count} segments of {segment} ps, fewer than groups = {groups}: "
                    "give a longer trajectory, shorter segments, fewer groups or several trajectories"
                )
            layout = (span_steps, groups, count // groups)
        else:
            layout = (span_steps, n_traj, count)
    D, D_error, D_scalar, D_scalar_error, blocks, lags, tensor = _diffusion(positions, dt, first, last, layout)
    return DiffusionEstimate(
        D=D,
        D_error=D_error,
        D_scalar=D_scalar,
        D_scalar_error=D_scalar_error,
        blocks=blocks,
        lags=lags,
        msd_tensor=tensor,
        fit_window=(t_min, t_max),
    )


# --------------------------------------------------------------------------------------------
# mobility and conductivity


@jax.jit
def _einstein(diffusion, diffusion_error, temperature):
    thermal = BOLTZMANN_MEV * temperature
    return Estimate(diffusion / thermal, None if diffusion_error is None else diffusion_error / thermal)


def einstein_mobility(diffusion, temperature, diffusion_error=None):
    """Einstein mobility ``u = D / (k_B T)``, velocity per force, Å^2 / (ps meV).

    ``(Å/ps) / (meV/Å) = Å^2 / (ps meV)``; with ``D`` a tensor this is the mobility tensor
    (``<V> = u F``). The error is propagated linearly from ``diffusion_error`` (``T`` exact):
    ``err(u) = err(D) / (k_B T)``.

    Args:
        diffusion: ``D`` in Å^2/ps, any shape (scalar or ``(3, 3)``).
        temperature: ``T`` in K, positive, broadcastable against ``diffusion``.
        diffusion_error: standard error of ``D`` (same shape), or ``None``.

    Returns:
        :class:`Estimate` ``(u, error)`` (``error`` is ``None`` without ``diffusion_error``).
    """
    diffusion = jnp.asarray(diffusion, dtype=float)
    _checks.require_finite("diffusion", diffusion)
    temperature = _require_temperature("temperature", temperature)
    diffusion_error = _require_error("diffusion_error", diffusion_error)
    return _einstein(diffusion, diffusion_error, temperature)


@jax.jit
def _drift(displacements, duration, force):
    samples = displacements @ force / (duration * jnp.sum(force**2))
    return Estimate(*_block_mean(samples, 0))


def drift_mobility(displacements, duration, force):
    """Mobility from the mean drift under a small constant force: ``u = <dR . F> / (t |F|^2)``.

    Each trajectory ``i`` gives ``u_i = (dR_i . F / |F|) / (t |F|)`` (drift velocity along ``F``
    per unit force); the result is their mean with the block standard error over trajectories.
    In linear response ``<V> = u F``, and for an isotropic (or cubic) medium ``u`` equals the
    Einstein mobility ``D / (k_B T)``.

    Args:
        displacements: ``(B, 3)`` displacements ``R(t) - R(0)`` (unwrapped), Å, of ``B >= 2``
            independent trajectories.
        duration: ``t`` in ps, positive.
        force: ``(3,)`` the constant force ``F``, meV/Å, nonzero.

    Returns:
        :class:`Estimate` ``(u, error)`` in Å^2 / (ps meV).
    """
    displacements = _require_array("displacements", displacements, (None, 3))
    _require_blocks("displacements (trajectories)", displacements.shape[0])
    force = _require_array("force", force, (3,))
    duration = jnp.asarray(duration, dtype=float)
    _checks.require_shape("duration", duration, ())
    _checks.require_positive("duration (ps)", duration)
    if _checks.is_concrete(force) and not np.any(np.asarray(force) != 0):
        raise ValueError("force must be nonzero")
    return _drift(displacements, duration, force)


@jax.jit
def _nernst_einstein(diffusion, diffusion_error, temperature, carrier_density, charge):
    scale = (
        carrier_density
        * (charge * units.ELEMENTARY_CHARGE) ** 2
        * CM2_PER_S_PER_A2_PER_PS
        / (units.BOLTZMANN_SI * temperature)
    )
    return Estimate(scale * diffusion, None if diffusion_error is None else scale * diffusion_error)


def nernst_einstein_conductivity(diffusion, temperature, carrier_density, charge=1, diffusion_error=None):
    """Nernst-Einstein ionic conductivity ``sigma = n (z e)^2 D / (k_B T)`` in S/cm.

    Dilute independent carriers (Haven ratio 1). Units: ``n`` in cm^-3, ``D`` in Å^2/ps
    (``* 1e-4`` -> cm^2/s), ``e`` in C, ``k_B T`` in J, so ``sigma`` is in
    C^2 / (J s cm) = S/cm. The error is propagated linearly from ``diffusion_error``.

    Args:
        diffusion: ``D`` in Å^2/ps (scalar, or a tensor for the conductivity tensor).
        temperature: ``T`` in K, positive.
        carrier_density: ``n`` in cm^-3 (carriers per cm^3), positive. (``x`` carriers per Å^3
            is ``x * 1e24`` cm^-3.)
        charge: carrier charge number ``z`` (nonzero; its sign does not matter).
        diffusion_error: standard error of ``D``, or ``None``.

    Returns:
        :class:`Estimate` ``(sigma, error)`` in S/cm (``error`` is ``None`` without
        ``diffusion_error``).
    """
    diffusion = jnp.asarray(diffusion, dtype=float)
    _checks.require_finite("diffusion", diffusion)
    temperature = _require_temperature("temperature", temperature)
    carrier_density = jnp.asarray(carrier_density, dtype=float)
    _checks.require_positive("carrier_density (cm^-3)", carrier_density)
    charge = jnp.asarray(charge, dtype=float)
    _checks.require_finite("charge", charge)
    if _checks.is_concrete(charge) and np.any(np.asarray(charge) == 0):
        raise ValueError("charge must be nonzero")
    diffusion_error = _require_error("diffusion_error", diffusion_error)
    return _nernst_einstein(diffusion, diffusion_error, temperature, carrier_density, charge)


# --------------------------------------------------------------------------------------------
# temperature dependence and kinetic temperature


def arrhenius_fit(temperatures, diffusion, diffusion_error):
    """Weighted least-squares Arrhenius fit ``ln D = ln D0 - E_a / (k_B T)``.

    The model is linear in ``(ln D0, E_a)`` with regressor ``x = -1 / (k_B T)``; each point has
    weight ``1 / s^2`` with ``s = err(D) / D`` (the standard error of ``ln D``). The covariance
    ``(X^T W X)^-1`` takes the given errors as the true ones (it is not rescaled by
    ``chi^2 / dof``; multiply by it yourself if the errors are believed to be underestimated).
    ``chi^2 = sum_i ((ln D_i - model_i) / s_i)^2`` has ``n - 2`` degrees of freedom.

    Args:
        temperatures: ``(n,)`` in K, positive, at least 2 distinct.
        diffusion: ``(n,)`` ``D`` in Å^2/ps (any unit: ``D0`` comes out in it), positive.
        diffusion_error: ``(n,)`` standard errors of ``D``, positive.

    Returns:
        :class:`ArrheniusFit` (``E_a`` in meV with error, ``D0`` with error, ``chi2_per_dof``,
        the ``(2, 2)`` covariance of ``(ln D0, E_a)`` and a note).
    """
    temperatures = np.asarray(temperatures, dtype=float)
    if temperatures.ndim != 1 or temperatures.size < 2:
        raise ValueError(f"temperatures must have shape (n,) with n >= 2, got {temperatures.shape}")
    _checks.require_positive("temperatures (K)", temperatures)
    n = temperatures.size
    diffusion = np.asarray(diffusion, dtype=float)
    diffusion_error = np.asarray(diffusion_error, dtype=float)
    _checks.require_shape("diffusion", diffusion, (n,))
    _checks.require_shape("diffusion_error", diffusion_error, (n,))
    _checks.require_positive("diffusion", diffusion)
    _checks.require_positive("diffusion_error", diffusion_error)
    if np.unique(temperatures).size < 2:
        raise ValueError("temperatures must hold at least 2 distinct values")

    x = -1.0 / (BOLTZMANN_MEV * temperatures)
    y = np.log(diffusion)
    weight = (diffusion / diffusion_error) ** 2
    design = np.stack([np.ones(n), x], axis=1)
    covariance = np.linalg.inv(design.T @ (weight[:, None] * design))
    log_prefactor, activation = covariance @ (design.T @ (weight * y))
    residual = y - design @ np.array([log_prefactor, activation])
    if n > 2:
        chi2_per_dof, note = float(np.sum(weight * residual**2) / (n - 2)), ""
    else:
        chi2_per_dof, note = math.nan, "2 temperatures: the line passes through both, no chi^2 (0 degrees of freedom)"
    prefactor = math.exp(log_prefactor)
    return ArrheniusFit(
        activation_energy=float(activation),
        activation_energy_error=math.sqrt(covariance[1, 1]),
        prefactor=prefactor,
        prefactor_error=prefactor * math.sqrt(covariance[0, 0]),
        chi2_per_dof=chi2_per_dof,
        covariance=covariance,
        note=note,
    )


@jax.jit
def _kinetic_temperature(velocities, mass):
    energy_blocks = 0.5 * mass * jnp.mean(velocities**2, axis=1)  # (B, 3), meV
    energy, energy_error = _block_mean(energy_blocks, 0)
    temp, temp_error = _block_mean(2.0 * jnp.mean(energy_blocks, axis=1) / BOLTZMANN_MEV, 0)
    scale = 2.0 / BOLTZMANN_MEV
    return KineticTemperature(energy, energy_error, scale * energy, scale * energy_error, temp, temp_error)


def kinetic_temperature(velocities, mass):
    """Kinetic energy per degree of freedom and the temperature it implies (equipartition).

        E_a = <M v_a^2 / 2> = k_B T_a / 2 (meV),   T = <M |v|^2> / (3 k_B) (K),

    averaged over the ``T`` saved times of each trajectory, then over the ``B`` trajectories,
    which are the independent blocks (successive velocities of one trajectory are correlated).

    Args:
        velocities: ``(B, T, 3)`` in Å/ps, ``B >= 2`` trajectories.
        mass: ion mass ``M`` in meV ps^2/Å^2 (1 = 9.6485 amu), positive scalar.

    Returns:
        :class:`KineticTemperature`.
    """
    velocities = _require_array("velocities", velocities, (None, None, 3))
    _require_blocks("velocities (trajectories)", velocities.shape[0])
    mass = jnp.asarray(mass, dtype=float)
    _checks.require_shape("mass", mass, ())
    _checks.require_positive("mass (meV ps^2/Å^2)", mass)
    return _kinetic_temperature(velocities, mass)
