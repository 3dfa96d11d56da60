"""Thermal state of a periodic framework as a sum of normal modes (physics.md section 5.1).

Physical units throughout: Å, ps, meV, kelvin, framework masses in meV ps^2/Å^2 (1 unit =
9.6485 amu). The lattice must be built in these units (springs meV/Å^2, spacing Å, mass
meV ps^2/Å^2), so that ``lattice.dynamical_matrix(q)`` is in 1/ps^2 and ``lattice.modes(q)``
gives angular frequencies in rad/ps.

On a periodic ``L^3`` lattice (``N = L^3`` cells ``n``, wave vectors ``q = 2 pi k / L``)

    u_n(t) = Re sum_{q, s} a_qs eta_qs exp(i (q.n - omega_qs t)),   a_qs = (N m)^(-1/2) zeta_qs,
    v_n(t) = Re sum_{q, s} (-i omega_qs) a_qs eta_qs exp(i (q.n - omega_qs t)),

with every travelling-wave term ``(q, s)`` an independent mode (``q`` and ``-q`` separately, and
a zone-boundary ``q = -q`` once) carrying an independent uniform phase:

* classical: mode energy ``E_qs = m N omega^2 |a|^2 / 2`` exponential with mean ``k_B T``
  (``|zeta|^2 = 2 E / omega^2``), which makes ``a`` complex Gaussian and the ensemble exactly
  the Gibbs state of the harmonic lattice;
* quantum: ``|zeta|^2 = 2 hbar (n + 1/2) / omega`` with ``n`` geometric,
  ``P(n) = (1 - x) x^n``, ``x = exp(-hbar omega / k_B T)`` (zero point included), so the mode
  energy is ``hbar omega (n + 1/2)``; second moments are exact, higher ones semiclassical.

The translation modes (``q = 0`` along axes without on-site confinement, ``omega = 0``) carry
nothing, so the centre of mass is at rest. A confined axis (``kappa > 0``) has a genuine
``q = 0`` oscillator, which is sampled like any other mode; this matches the pseudo-inverse
convention of ``Lattice.green_function(cells, size=L)``. For a gapless lattice the sums are
exactly physics.md's ``sum_{q != 0}``. The second moments are

    <u_a u_b^T> = (1/(m N)) sum_{q,s} eta eta^T cos(q.(n_a - n_b)) w_u(omega),
        w_u = k_B T / omega^2 (classical),   hbar coth(hbar omega / 2 k_B T) / (2 omega) (quantum),
    <v_a v_b^T> = the same with w_v = omega^2 w_u,

so classically ``<u u> = k_B T G`` (``G = K^+`` the periodic static Green's function) and
``<v v> = (k_B T / m)(delta_ab - 1/N) 1`` for a gapless lattice.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..brillouin import periodic_grid
from ..lattice import Lattice
from ..units import BOLTZMANN_MEV, HBAR_MEV_PS


STATISTICS = ("classical", "quantum")


class ThermalModes(eqx.Module):
    """Sampled normal-mode state of a periodic ``L^3`` framework (physics.md section 5.1).

    Modes are indexed by ``(q, s)``: ``q`` runs over ``periodic_grid(L, 3)`` (FFT order, Gamma
    first) and ``s`` over the three branches (ascending in ``omega``, except at Gamma where branch
    ``s`` is Cartesian axis ``s`` with ``omega = sqrt(kappa_s / m)``).

    Attributes:
        lattice: the framework (physical units).
        size: cells per axis ``L`` (static); ``N = L^3``.
        wavevectors: ``(N, 3)`` wave vectors ``q`` in lattice units (rad per cell).
        frequencies: ``(N, 3)`` angular frequencies ``omega_qs`` in rad/ps.
        polarisations: ``(N, 3, 3)`` real unit polarisations, branch ``s`` as the last index.
        amplitudes: ``(N, 3)`` complex ``a_qs = (N m)^(-1/2) zeta_qs`` in Å, random phase
            included; exactly zero for the translation modes.

    Sampled by :func:`thermal_modes`; differentiable in the temperature (classical statistics
    draw ``E = k_B T * Exponential(1)``), not in the springs (polarisations of degenerate
    branches are not smooth functions of them).
    """

    lattice: Lattice
    size: int = eqx.field(static=True)
    wavevectors: jax.Array
    frequencies: jax.Array
    polarisations: jax.Array
    amplitudes: jax.Array

    def displacements(self, t=0.0):
        """Displacements ``u_n(t)`` of the whole lattice, ``(L, L, L, 3)`` in Å (cell ``n`` at
        index ``n``), by one FFT over ``q``; ``t`` in ps."""
        return _field(self, t, velocity=False)

    def velocities(self, t=0.0):
        """Velocities ``v_n(t) = du_n/dt`` of the whole lattice, ``(L, L, L, 3)`` in Å/ps."""
        return _field(self, t, velocity=True)

    def site_motion(self, cells, t=0.0):
        """Displacement and velocity of the sites at integer ``cells (S, 3)`` at time ``t`` (ps).

        A direct mode sum costing ``O(S N)``; jit-able with ``cells`` and ``t`` traced. Cells may
        take any integer values (integer or integer-valued float dtype): the lattice is periodic,
        cell ``n`` and ``n + L m`` are the same site.

        Returns:
            ``(u (S, 3)`` in Å, ``v (S, 3)`` in Å/ps``)``.
        """
        cells = jnp.asarray(cells)
        if cells.ndim != 2 or cells.shape[-1] != 3:
            raise ValueError(f"cells must have shape (S, 3), got {cells.shape}")
        return _site_motion(self, cells, t)

    def mode_energies(self):
        """``(N, 3)`` energy of each travelling-wave mode, ``m N omega^2 |a|^2 / 2`` in meV."""
        return 0.5 * self.lattice.mass * self.size**3 * self.frequencies**2 * jnp.abs(self.amplitudes) ** 2

    def energy(self):
        """Total harmonic energy of the lattice (kinetic plus spring), meV: the sum of the mode
        energies (the cross terms between ``q`` and ``-q`` cancel between kinetic and potential)."""
        return jnp.sum(self.mode_energies())


@functools.partial(jax.jit, static_argnames="velocity")
def _field(modes, t, velocity):
    """``Re sum_q c_q exp(i q.n)`` over the whole lattice, ``c_q = sum_s a_qs eta_qs exp(-i omega t)``
    (times ``-i omega`` for the velocity): ``N * ifftn(c)`` for ``q = 2 pi k / L`` in FFT order."""
    factor = modes.amplitudes * jnp.exp(-1j * modes.frequencies * t)
    if velocity:
        factor = -1j * modes.frequencies * factor
    vectors = jnp.einsum("qis,qs->qi", modes.polarisations, factor)
    size = modes.size
    return size**3 * jnp.fft.ifftn(vectors.reshape((size,) * 3 + (3,)), axes=(0, 1, 2)).real


@jax.jit
def _site_motion(modes, cells, t):
    """Direct mode sum at ``cells (S, 3)``: ``(u, v)``, each ``(S, 3)``."""
    wrapped = jnp.mod(cells, modes.size).astype(modes.wavevectors.dtype)  # q.(L m) = 2 pi integer
    phases = jnp.exp(1j * (wrapped @ modes.wavevectors.T))  # (S, N)
    factor = modes.amplitudes * jnp.exp(-1j * modes.frequencies * t)
    vectors = jnp.einsum("qis,qs->qi", modes.polarisations, factor)
    rates = jnp.einsum("qis,qs->qi", modes.polarisations, -1j * modes.frequencies * factor)
    return (phases @ vectors).real, (phases @ rates).real


def _require_lattice(lattice):
    if not isinstance(lattice, Lattice):
        raise ValueError(f"lattice must be a jaxion.lattice.Lattice, got {type(lattice).__name__}")
    if lattice.dim != 3:
        raise ValueError(
            f"lattice must be a 3D framework (cells indexed by three integers), got a {lattice.dim}D one; "
            "thermal modes are built on a periodic L^3 lattice"
        )


def _require_statistics(statistics):
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")


def _check_inputs(lattice, size, temperature, statistics):
    _require_lattice(lattice)
    _checks.require_integer("size", size, low=2)
    _require_statistics(statistics)
    temperature = jnp.asarray(temperature, dtype=float)
    _checks.require_shape("temperature", temperature, ())
    _checks.require_positive("temperature (K)", temperature, allow_zero=True)
    return int(size), temperature


def _mode_table(lattice, size):
    """Wave vectors ``(N, 3)``, frequencies ``(N, 3)`` and polarisations ``(N, 3, 3)`` of the mesh.

    Gamma is built directly (``D(0) = diag(kappa) / m``: Cartesian polarisations, ``omega =
    sqrt(kappa / m)``, exactly zero on unconfined axes) rather than through ``eigh`` of a
    degenerate matrix.
    """
    q = jnp.asarray(periodic_grid(size, 3))
    omega, eta = lattice.modes(q[1:])
    kappa = lattice.confinement / lattice.mass
    gamma = jnp.where(kappa > 0, jnp.sqrt(jnp.where(kappa > 0, kappa, 1.0)), 0.0)
    frequencies = jnp.concatenate([gamma[None], omega])
    polarisations = jnp.concatenate([jnp.eye(3)[None], eta])
    return q, frequencies, polarisations


def thermal_modes(lattice, size, temperature, key, *, statistics="classical"):
    """Sample the thermal normal-mode state of a periodic ``size^3`` framework.

    Args:
        lattice: a 3D :class:`~jaxion.lattice.Lattice` in physical units (meV/Å^2, Å,
            meV ps^2/Å^2).
        size: cells per axis ``L`` (a Python integer >= 2; static under ``jit``).
        temperature: ``T`` in kelvin (finite, >= 0; may be traced). ``T = 0`` gives the
            framework at rest (classical) or zero-point motion only (quantum).
        key: JAX PRNG key; ``vmap`` over keys for an ensemble.
        statistics: ``"classical"`` (equipartition, each mode energy exponential with mean
            ``k_B T``) or ``"quantum"`` (Bose-Einstein occupation plus zero point).

    Returns:
        :class:`ThermalModes`.

    Raises:
        ValueError: bad ``lattice``, ``size``, ``temperature`` or ``statistics``.
    """
    size, temperature = _check_inputs(lattice, size, temperature, statistics)
    return _sample(lattice, size, temperature, key, statistics)


@functools.partial(jax.jit, static_argnames=("size", "statistics"))
def _sample(lattice, size, temperature, key, statistics):
    q, omega, eta = _mode_table(lattice, size)
    n_cells = size**3
    k_t = BOLTZMANN_MEV * temperature
    active = omega > 0
    safe_omega = jnp.where(active, omega, 1.0)
    key_energy, key_phase = jax.random.split(key)
    if statistics == "classical":
        energy = k_t * jax.random.exponential(key_energy, omega.shape, dtype=omega.dtype)
        zeta_squared = 2.0 * energy / safe_omega**2
    else:
        # n = floor(log U / log x), U uniform on (0, 1], is geometric: P(n >= k) = P(U <= x^k) = x^k
        uniform = 1.0 - jax.random.uniform(key_energy, omega.shape, dtype=omega.dtype)
        hot = k_t > 0
        log_x = -HBAR_MEV_PS * safe_omega / jnp.where(hot, k_t, 1.0)
        occupation = jnp.where(hot, jnp.floor(jnp.log(uniform) / log_x), 0.0)
        zeta_squared = 2.0 * HBAR_MEV_PS * (occupation + 0.5) / safe_omega
    modulus = jnp.sqrt(jnp.where(active, zeta_squared, 0.0) / (n_cells * lattice.mass))
    phase = jax.random.uniform(key_phase, omega.shape, dtype=omega.dtype, maxval=2.0 * jnp.pi)
    amplitudes = jnp.where(active, modulus * jnp.exp(1j * phase), 0.0)
    return ThermalModes(lattice, size, q, omega, eta, amplitudes)


# ------------------------------------------------------------------ second moments


def _weight_classical_u(lam, k_t):
    """``k_B T / omega^2`` with ``lam = omega^2``."""
    return k_t / lam


def _weight_quantum_u(lam, k_t):
    """``hbar coth(hbar omega / 2 k_B T) / (2 omega)``; ``hbar / (2 omega)`` at ``T = 0``."""
    omega = jnp.sqrt(lam)
    hot = k_t > 0
    x = HBAR_MEV_PS * omega / (2.0 * jnp.where(hot, k_t, 1.0))
    coth = jnp.where(hot, 1.0 / jnp.tanh(jnp.where(hot, x, 1.0)), 1.0)
    return HBAR_MEV_PS * coth / (2.0 * omega)


def _weight_classical_v(lam, k_t):
    """``k_B T`` (``omega^2`` times the displacement weight)."""
    return k_t * jnp.ones_like(lam)


def _weight_quantum_v(lam, k_t):
    """``hbar omega coth(hbar omega / 2 k_B T) / 2``."""
    return lam * _weight_quantum_u(lam, k_t)


_WEIGHTS = {
    ("displacement", "classical"): _weight_classical_u,
    ("displacement", "quantum"): _weight_quantum_u,
    ("velocity", "classical"): _weight_classical_v,
    ("velocity", "quantum"): _weight_quantum_v,
}


def _spectral_parts(weight, matrix, k_t):
    eigenvalues, vectors = jnp.linalg.eigh(matrix)
    values = weight(eigenvalues, k_t)
    return (vectors * values[..., None, :]) @ jnp.swapaxes(vectors, -1, -2), eigenvalues, vectors


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _spectral_function(weight, matrix, k_t):
    """``w(D) = sum_s w(lambda_s) eta_s eta_s^T`` for symmetric positive-definite ``(..., 3, 3)``.

    The derivative in ``matrix`` uses the Daleckii-Krein formula (divided differences of ``w``,
    ``w'`` at (near-)equal eigenvalues), finite where differentiating ``eigh`` gives NaN at
    degenerate branches; the derivative in ``k_t`` is that of ``w``.
    """
    return _spectral_parts(weight, matrix, k_t)[0]


@_spectral_function.defjvp
def _spectral_function_jvp(weight, primals, tangents):
    (matrix, k_t), (d_matrix, d_k_t) = primals, tangents
    result, lam, vectors = _spectral_parts(weight, matrix, k_t)
    lam_i, lam_j = lam[..., :, None], lam[..., None, :]
    difference = lam_i - lam_j
    scale = jnp.max(jnp.abs(lam), axis=-1)[..., None, None]
    close = jnp.abs(difference) <= 1e-6 * scale
    midpoint = 0.5 * (lam_i + lam_j)
    slope = jax.jvp(lambda x: weight(x, k_t), (midpoint,), (jnp.ones_like(midpoint),))[1]
    divided = (weight(lam_i, k_t) - weight(lam_j, k_t)) / jnp.where(close, 1.0, difference)
    kernel = jnp.where(close, slope, divided)
    d_values = jax.jvp(lambda t: weight(lam, t), (k_t,), (d_k_t,))[1]
    vt = jnp.swapaxes(vectors, -1, -2)
    rotated = vt @ (0.5 * (d_matrix + jnp.swapaxes(d_matrix, -1, -2))) @ vectors
    tangent = vectors @ (kernel * rotated + d_values[..., None, :] * jnp.eye(3)) @ vt
    return result, tangent


def _covariance(kind, lattice, size, temperature, cells, statistics):
    size, temperature = _check_inputs(lattice, size, temperature, statistics)
    cells = jnp.asarray(cells)
    _checks.require_shape("cells", cells, (None, 3))
    if _checks.is_concrete(cells) and not np.all(np.asarray(cells) == np.round(np.asarray(cells))):
        raise ValueError(f"cells must be integer cell indices, got {np.asarray(cells)}")
    return _covariance_sum(kind, lattice, size, temperature, cells, statistics)


@functools.partial(jax.jit, static_argnames=("kind", "size", "statistics"))
def _covariance_sum(kind, lattice, size, temperature, cells, statistics):
    weight = _WEIGHTS[(kind, statistics)]
    k_t = BOLTZMANN_MEV * temperature
    q = jnp.asarray(periodic_grid(size, 3))
    spectral = _spectral_function(weight, lattice.dynamical_matrix(q[1:]), k_t)  # (N - 1, 3, 3)
    # Gamma: D(0) = diag(kappa) / m; translations (kappa = 0) left out
    kappa = lattice.confinement / lattice.mass
    gamma = jnp.where(kappa > 0, weight(jnp.where(kappa > 0, kappa, 1.0), k_t), 0.0)
    spectral = jnp.concatenate([jnp.diag(gamma)[None], spectral])
    wrapped = jnp.mod(cells, size).astype(float)
    phases = jnp.exp(1j * (wrapped @ q.T))  # (S, N)
    total = jnp.einsum("aq,qij,bq->abij", phases, spectral.astype(phases.dtype), phases.conj()).real
    return total / (lattice.mass * size**3)


def displacement_covariance(lattice, size, temperature, cells, statistics="classical"):
    """Thermal displacement covariance ``<u_a u_b^T>`` of a periodic ``size^3`` lattice, Å^2.

    ``(1/(m N)) sum_{q,s} eta eta^T cos(q.(n_a - n_b)) w(omega)`` with translations left out and
    ``w = k_B T / omega^2`` (classical, so the result is ``k_B T G``) or
    ``hbar coth(hbar omega / 2 k_B T) / (2 omega)`` (quantum). A direct mode sum,
    ``O(S^2 N)``; differentiable in the temperature and the lattice parameters.

    Args:
        lattice: 3D :class:`~jaxion.lattice.Lattice` in physical units.
        size: cells per axis ``L`` (integer >= 2).
        temperature: kelvin, finite and >= 0.
        cells: ``(S, 3)`` integer cells.
        statistics: ``"classical"`` or ``"quantum"``.

    Returns:
        ``(S, S, 3, 3)``.
    """
    return _covariance("displacement", lattice, size, temperature, cells, statistics)


def velocity_covariance(lattice, size, temperature, cells, statistics="classical"):
    """Thermal velocity covariance ``<v_a v_b^T>``, (Å/ps)^2: as :func:`displacement_covariance`
    with ``omega^2 w(omega)``, i.e. ``k_B T`` (classical; ``(k_B T / m)(delta_ab - 1/N) 1`` for a
    gapless lattice) or ``hbar omega coth(hbar omega / 2 k_B T) / 2`` (quantum).

    Returns:
        ``(S, S, 3, 3)``.
    """
    return _covariance("velocity", lattice, size, temperature, cells, statistics)
