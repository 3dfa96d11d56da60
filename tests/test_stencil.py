"""The periodic spring stencil (jaxion.stencil): the force against the dynamical matrix applied in
Fourier space, its hand-written reverse-mode derivative against plain autodiff, and the skipped
transverse term. Small boxes (cubic L <= 6, chain L = 10): the file runs in seconds."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (enables float64)
from jaxion.brillouin import periodic_grid
from jaxion.lattice import Chain, Lattice, SimpleCubic
from jaxion.stencil import PeriodicStencil

# a general lattice: bonds along several directions, confinement, transverse springs, mass != 1
GENERAL = Lattice([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, -1)], k_long=[15, 14, 13, 5, 4],
                  k_trans=[1, 2, 0.5, 0.3, 0.2], confinement=[0.5, 1.0, 2.0], mass=1.7)


@pytest.mark.parametrize(
    "lattice, size",
    [
        (Lattice([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, -1), (0, 1, 1), (1, 1, 1)],
                 k_long=[15, 14, 13, 5, 4, 3, 2], k_trans=[1, 2, 0.5, 0.3, 0.2, 0.1, 0.7],
                 confinement=[0.5, 1.0, 2.0], mass=1.7), 6),
        (Chain(k_par=99 / 4, k_perp=7.0, kappa_par=1.0, kappa_perp=0.5, mass=0.8), 10),
    ],
)
def test_stencil_equals_fourier_dynamical_matrix(lattice, size):
    """-m W rho by the stencil equals -m D(q) rho_q applied by FFT (D from lattice.dynamical_matrix).
    Rounding only: 1e-12 relative to the largest force."""
    stencil = PeriodicStencil(lattice, size)
    rho = jax.random.normal(jax.random.PRNGKey(1), stencil.shape)
    force = eqx.filter_jit(stencil.spring_force)(rho)
    axes = tuple(range(1, rho.ndim))
    q = periodic_grid(size, lattice.dim).reshape((size,) * lattice.dim + (lattice.dim,))
    d = lattice.dynamical_matrix(q) * lattice.mass
    fourier = -jnp.einsum("...ij,j...->i...", d, jnp.fft.fftn(rho, axes=axes))
    fourier = jnp.fft.ifftn(fourier, axes=axes)
    assert float(jnp.max(jnp.abs(fourier.imag))) < 1e-12 * float(jnp.max(jnp.abs(force)))
    assert float(jnp.max(jnp.abs(fourier.real - force))) < 1e-12 * float(jnp.max(jnp.abs(force)))


@pytest.mark.parametrize("size", [5, 6])
def test_spring_force_vjp_equals_autodiff_of_stencil(size):
    """The reverse-mode derivative of spring_force (the stencil's exact transpose over the zero-
    embedded cotangent, folded back by G^T; springs and scale by the parameter-only VJP) equals
    plain autodiff through the wrapping gather and the stencil's slices, for the displacements and
    every lattice parameter (general lattice with confinement and transverse springs, traced
    scale). Rounding only: 1e-12 relative."""
    stencil = PeriodicStencil(GENERAL, size)
    rho = jax.random.normal(jax.random.PRNGKey(2), stencil.shape)
    cotangent = jax.random.normal(jax.random.PRNGKey(3), stencil.shape)
    scale = jnp.asarray(4.0 * np.pi**2 / 1.7)

    def pullback(apply):
        _, vjp = eqx.filter_vjp(apply, stencil, scale, rho)
        return vjp(cotangent)

    wrapped = np.arange(-1, size + 1) % size  # the halo by plain indexing (autodiff: scatter-add)
    custom = pullback(lambda m, s, r: m.spring_force(r, s))
    plain = pullback(lambda m, s, r: jnp.stack(m._stencil(tuple(r[(slice(None),) + np.ix_(wrapped, wrapped, wrapped)]), s)))
    leaves_custom, leaves_plain = jax.tree_util.tree_leaves(custom), jax.tree_util.tree_leaves(plain)
    assert len(leaves_custom) == len(leaves_plain) >= 6  # rho, scale, k_long, k_trans, confinement, ...
    for a, b in zip(leaves_custom, leaves_plain):
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-12 * max(float(jnp.max(jnp.abs(b))), 1.0)


def test_transverse_term_skipped_only_where_it_is_zero():
    """``transverse`` defaults to False exactly when every ``k_trans`` is concretely zero (traced
    springs keep the term), and skipping the zero term leaves the force bitwise unchanged."""
    central = SimpleCubic()
    assert not PeriodicStencil(central, 5).transverse and PeriodicStencil(GENERAL, 5).transverse
    traced = []
    jax.jit(lambda lattice: traced.append(PeriodicStencil(lattice, 5).transverse))(central)
    assert traced == [True]
    rho = jax.random.normal(jax.random.PRNGKey(4), (3, 5, 5, 5))
    skipped = PeriodicStencil(central, 5).spring_force(rho)
    np.testing.assert_array_equal(skipped, PeriodicStencil(central, 5, transverse=True).spring_force(rho))
