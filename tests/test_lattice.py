"""Frameworks: dynamical matrix, modes, long-wave limit, Green's function, validation.

Every check compares jaxion with an independent route: the written-out Eqs. 12 and 19, a dense
real-space force-constant matrix, finite differences, closed forms or scipy quadrature.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import jaxion  # noqa: F401  (enables float64)
from jaxion.brillouin import periodic_grid
from jaxion.lattice import Chain, Lattice, SimpleCubic

RNG = np.random.default_rng(0)
CUBIC = SimpleCubic()  # paper: k1 = 15, k2 = 5, alpha = 2


def eq19(q, k1, k2):
    """Eq. 19 written out (physics.md section 2), for q (..., 3)."""
    c, s = np.cos(q), np.sin(q)
    d = np.zeros(q.shape[:-1] + (3, 3))
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        d[..., i, i] = 2 * k1 * (1 - c[..., i]) + 2 * k2 * (2 - c[..., i] * c[..., j] - c[..., i] * c[..., k])
        d[..., i, j] = d[..., j, i] = 2 * k2 * s[..., i] * s[..., j]
    return d


def dense_force_constants(lattice, size):
    """Real-space force-constant matrix K (3N, 3N) of a periodic size^dim lattice, from the bond
    list: each bond b (both signs) adds Phi_b to K_nn and -Phi_b to K_{n,n+b}; kappa on the diagonal."""
    dim = lattice.dim
    cells = np.stack(np.meshgrid(*[np.arange(size)] * dim, indexing="ij"), -1).reshape(-1, dim)
    index = lambda c: np.ravel_multi_index(tuple(np.mod(c, size).T), (size,) * dim)
    n = len(cells)
    k = np.zeros((n, 3, n, 3))
    sites = np.arange(n)
    for b, u, kl, kt in zip(lattice.offsets, lattice.directions, lattice.k_long, lattice.k_trans):
        u = np.array(u)
        phi = kl * np.outer(u, u) + kt * (np.eye(3) - np.outer(u, u))
        for sign in (1, -1):
            neighbour = index(cells + sign * np.array(b))
            k[sites, :, sites, :] += phi
            np.add.at(k, (sites, slice(None), neighbour, slice(None)), -phi)
    k[sites, :, sites, :] += np.diag(np.asarray(lattice.confinement))
    return cells, k.reshape(3 * n, 3 * n)


# ---------------------------------------------------------------- dynamical matrix


def test_simple_cubic_equals_eq19():
    # same formula summed in a different order: only rounding differs (entries ~ 100, eps 2e-16)
    q = RNG.uniform(-np.pi, np.pi, (4, 5, 3))
    for k1, k2 in [(15.0, 5.0), (3.0, 0.7)]:
        d = np.asarray(SimpleCubic(k1=k1, k2=k2).dynamical_matrix(q))
        assert d.shape == (4, 5, 3, 3)
        np.testing.assert_allclose(d, eq19(q, k1, k2), rtol=0, atol=1e-12)


def test_chain_frequencies_equal_eq12():
    # Eq. 12: omega_u^2 = kappa_u + 4 k_u sin^2(q/2); x, y transverse, z along the chain
    chain = Chain(k_par=99 / 4, k_perp=7.0, kappa_par=1.0, kappa_perp=0.5)
    q = RNG.uniform(-np.pi, np.pi, (20, 1))
    s2 = np.sin(q[:, 0] / 2) ** 2
    expected = np.sort(np.stack([0.5 + 28 * s2, 0.5 + 28 * s2, 1.0 + 99 * s2], -1), -1)
    np.testing.assert_allclose(chain.frequencies(q), np.sqrt(expected), rtol=1e-13)
    d = np.asarray(chain.dynamical_matrix(q))
    np.testing.assert_allclose(d[:, 2, 2], 1.0 + 99 * s2, rtol=1e-13)
    np.testing.assert_allclose(d[:, 0, 1], 0.0, atol=1e-14)


def test_dynamical_matrix_symmetries():
    # a general lattice: transverse springs, anisotropic confinement, mass != 1
    lattice = Lattice(
        [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1)],
        k_long=[3.0, 4.0, 5.0, 1.0, 1.5, 2.0],
        k_trans=0.3,
        confinement=(0.2, 0.0, 0.7),
        mass=2.5,
    )
    q = RNG.uniform(-np.pi, np.pi, (30, 3))
    d, d_minus = np.asarray(lattice.dynamical_matrix(q)), np.asarray(lattice.dynamical_matrix(-q))
    np.testing.assert_allclose(d, d_minus, atol=1e-14)  # D(-q) = D(q)
    np.testing.assert_allclose(d, np.swapaxes(d, -1, -2), atol=1e-14)  # real symmetric = hermitian
    np.testing.assert_allclose(lattice.dynamical_matrix(np.zeros(3)), np.diag([0.2, 0.0, 0.7]) / 2.5, atol=1e-15)
    # D(q + 2 pi G) = D(q): periodic in the reciprocal lattice
    np.testing.assert_allclose(lattice.dynamical_matrix(q + 2 * np.pi * np.array([1, -2, 3])), d, atol=1e-12)
    # modes diagonalise D: D e_u = omega_u^2 e_u with orthonormal e
    omega, pol = lattice.modes(q)
    np.testing.assert_allclose(d @ pol, pol * omega[:, None, :] ** 2, atol=1e-12)
    np.testing.assert_allclose(np.swapaxes(pol, -1, -2) @ pol, np.broadcast_to(np.eye(3), d.shape), atol=1e-13)
    np.testing.assert_allclose(lattice.frequencies(q), omega, atol=1e-13)


# ---------------------------------------------------------------- long waves, sound speeds


def unit_vectors(count):
    n = RNG.normal(size=(count, 3))
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_long_wave_tensor_is_q2_coefficient():
    # D(eps n) / eps^2 = S(n) + O(eps^2): eps = 1e-3 -> relative error ~ 1e-7 (the q^4 term over
    # S ~ 1/12 eps^2 k b^4); the 1 - cos rounding adds ~ 1e-16 / 5e-7 = 2e-10
    eps = 1e-3
    n = unit_vectors(8)
    for lattice, directions in [(CUBIC, n), (Chain(kappa_par=0.0, kappa_perp=0.0), np.ones((1, 1)))]:
        d = np.asarray(lattice.dynamical_matrix(eps * directions)) / eps**2
        np.testing.assert_allclose(d, lattice.long_wave_tensor(directions), rtol=0, atol=1e-6 * np.max(np.abs(d)))


def test_sound_speeds_equal_dispersion_slope():
    # slope (omega(2 eps) - omega(eps)) / eps in cells^-1, times 2 pi alpha -> l per period; the
    # dispersion is linear up to O(eps^2) ~ 1e-6 relative corrections at eps = 1e-3
    eps = 1e-3
    n = unit_vectors(6)
    cubic_slope = (CUBIC.frequencies(2 * eps * n) - CUBIC.frequencies(eps * n)) / eps * 2 * np.pi * 2.0
    np.testing.assert_allclose(cubic_slope, CUBIC.sound_speeds(n), rtol=1e-5)
    chain = Chain(k_par=99 / 4, k_perp=3.0, kappa_par=0.0, kappa_perp=0.0, spacing=1.5)
    one = np.ones((1, 1))
    chain_slope = (chain.frequencies(2 * eps * one) - chain.frequencies(eps * one)) / eps * 2 * np.pi * 1.5
    np.testing.assert_allclose(chain_slope, chain.sound_speeds(one), rtol=1e-5)
    # closed form for the chain: v_u = 2 pi alpha sqrt(k_u)
    np.testing.assert_allclose(chain.sound_speeds(one)[0], 2 * np.pi * 1.5 * np.sqrt([3.0, 3.0, 99 / 4]), rtol=1e-13)


# ---------------------------------------------------------------- Green's function


@pytest.mark.parametrize(
    "lattice, size, cells",
    [
        (SimpleCubic(), 6, [(0, 0, 0), (1, 0, 0), (2, 3, 5), (0, 1, 1)]),
        (SimpleCubic(k1=4.0, k2=1.0, confinement=(0.0, 0.3, 0.0), mass=1.7, spacing=1.0), 5, [(0, 0, 0), (3, 1, 4)]),
        (Chain(k_par=99 / 4, k_perp=5.0, kappa_par=1.0, kappa_perp=0.4, mass=2.0), 10, [(0,), (1,), (7,)]),
        (Chain(kappa_par=0.0, kappa_perp=0.0), 9, [(0,), (4,)]),
    ],
)
def test_green_function_inverts_dense_force_constants(lattice, size, cells):
    # independent route: the dense (3N, 3N) real-space K of the whole finite lattice, its
    # pseudo-inverse (translations projected out: exact zero modes, rcond far above rounding);
    # both are exact, so only rounding (~1e-13 of |G|) separates them
    all_cells, k = dense_force_constants(lattice, size)
    g_dense = np.linalg.pinv(k, rcond=1e-10, hermitian=True).reshape(len(all_cells), 3, len(all_cells), 3)
    index = [np.ravel_multi_index(tuple(np.mod(c, size)), (size,) * lattice.dim) for c in cells]
    expected = g_dense[np.ix_(index, range(3), index, range(3))].transpose(0, 2, 1, 3)
    g = np.asarray(lattice.green_function(cells, size=size))
    assert g.shape == (len(cells), len(cells), 3, 3)
    np.testing.assert_allclose(g, expected, rtol=0, atol=1e-10)
    # K G = 1 - translations on the full lattice: column of site 0 via green_function of every cell
    column = np.asarray(lattice.green_function(np.concatenate([all_cells[:1], all_cells]), size=size))[1:, 0]
    kg = k @ column.reshape(-1, 3)
    free = np.asarray(lattice.confinement) == 0
    projector = np.eye(3 * len(all_cells))[:, :3] - np.tile(np.diag(free / len(all_cells)), (len(all_cells), 1))
    np.testing.assert_allclose(kg, projector, atol=1e-10)


@pytest.fixture(scope="module")
def cubic_green():
    cells = [(0, 0, 0), (1, 0, 0), (1, 1, 0)]
    return cells, np.asarray(CUBIC.green_function(cells, n_radial=32, n_face=32))


def test_green_infinite_quadrature_converges(cubic_green):
    # doubling the pyramid rule's orders changes G by far less than the 1e-6 we rely on
    cells, g32 = cubic_green
    g16 = np.asarray(CUBIC.green_function(cells, n_radial=16, n_face=16))
    g48 = np.asarray(CUBIC.green_function(cells, n_radial=48, n_face=48))
    scale = np.max(np.abs(g48))
    assert np.max(np.abs(g32 - g48)) < 1e-11 * scale
    assert np.max(np.abs(g16 - g32)) < 1e-6 * scale
    np.testing.assert_allclose(g32, np.swapaxes(np.swapaxes(g32, 0, 1), 2, 3), atol=1e-15)  # G_ab = G_ba^T


def test_green_infinite_is_large_size_limit(cubic_green):
    # G_L - G_inf ~ c / L in 3D (the missing Gamma cell of a 1/q^2 integrand): the difference must
    # halve with each doubling of L (ratio 2 within 5%), and the Richardson extrapolation
    # 2 G_64 - G_32 must hit G_inf within 1e-3 relative (the next term is O(1/L^3))
    cells, g_inf = cubic_green
    diff = {size: np.asarray(CUBIC.green_function(cells, size=size)) - g_inf for size in (16, 32, 64)}
    big = np.abs(diff[64]) > 1e-5
    for small, large in [(16, 32), (32, 64)]:
        np.testing.assert_allclose(diff[small][big] / diff[large][big], 2.0, rtol=0.05)
    extrapolated = 2 * diff[64] - diff[32]
    assert np.max(np.abs(extrapolated)) < 1e-3 * np.max(np.abs(g_inf))


def test_confined_chain_green_closed_form():
    # (1/2pi) int cos(q d) / (A - 2k cos q) dq = z^|d| / sqrt(A^2 - 4k^2), A = kappa + 2k,
    # z = (A - sqrt(A^2 - 4k^2)) / 2k; also scipy quad of the same integral (abs. err 1e-13)
    k_par, k_perp, kappa_par, kappa_perp, mass = 99 / 4, 3.0, 1.0, 0.5, 1.3
    chain = Chain(k_par, k_perp, kappa_par, kappa_perp, mass=mass)
    cells = [(0,), (1,), (3,)]
    g = np.asarray(chain.green_function(cells))
    for axis, (k, kappa) in enumerate([(k_perp, kappa_perp), (k_perp, kappa_perp), (k_par, kappa_par)]):
        a = kappa + 2 * k
        root = np.sqrt(a**2 - 4 * k**2)
        z = (a - root) / (2 * k)
        for i, j in [(0, 0), (0, 1), (1, 2), (0, 2)]:
            d = abs(cells[i][0] - cells[j][0])
            np.testing.assert_allclose(g[i, j, axis, axis], z**d / root, rtol=1e-10)
            quad = integrate.quad(lambda q: np.cos(q * d) / (a - 2 * k * np.cos(q)), 0, np.pi, epsabs=1e-14)[0] / np.pi
            np.testing.assert_allclose(g[i, j, axis, axis], quad, rtol=1e-9)
    np.testing.assert_allclose(g[:, :, 0, 1], 0.0, atol=1e-15)


def test_unconfined_chain_infinite_green_raises():
    with pytest.raises(ValueError, match="diverges"):
        Chain(kappa_par=1.0, kappa_perp=0.0).green_function([(0,)])
    with pytest.raises(ValueError, match="cells"):
        CUBIC.green_function([(0, 0)])
    with pytest.raises(ValueError, match="size"):
        CUBIC.green_function([(0, 0, 0)], size=0)
    with pytest.raises(ValueError, match="q must have shape"):
        CUBIC.dynamical_matrix(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="q must have shape"):
        Chain().frequencies(np.zeros(3))
    with pytest.raises(ValueError, match="n must have shape"):
        CUBIC.sound_speeds(np.array([1.0]))


# ---------------------------------------------------------------- band structure, DOS


def test_band_structure():
    bands = CUBIC.band_structure(points_per_segment=10)
    assert bands["labels"] == ["Γ", "X", "M", "Γ", "R"]
    assert bands["frequencies"].shape == (41, 3) and bands["distance"].shape == (41,)
    # ticks sit at the path's corners: |GX| = pi, |XM| = pi, |MG| = sqrt2 pi, |GR| = sqrt3 pi
    np.testing.assert_allclose(bands["ticks"], np.pi * np.cumsum([0, 1, 1, np.sqrt(2), np.sqrt(3)]), rtol=1e-14)
    np.testing.assert_allclose(bands["distance"][::10], bands["ticks"], rtol=1e-14)
    # frequencies at X from Eq. 19 directly
    expected_x = np.sqrt(np.linalg.eigvalsh(eq19(np.array([0, np.pi, 0]), 15.0, 5.0)))
    np.testing.assert_allclose(bands["frequencies"][10], expected_x, rtol=1e-12)
    np.testing.assert_allclose(bands["frequencies"][0], 0.0, atol=1e-7)
    chain = Chain().band_structure(points_per_segment=5)
    assert chain["labels"] == ["Γ", "Z"] and chain["frequencies"].shape == (6, 3)


def test_density_of_states():
    # integrates to 3 (three branches): Gaussian broadening 0.05, trapezoid with step 0.02
    # (spectrally accurate for a Gaussian sampled at 2.5 points per width: error < 1e-8); and the mass per frequency bin agrees with a plain histogram of Eq. 19's
    # frequencies on the same 16^3 mesh (bins 1 wide, 20x the broadening: tolerance 0.01 of the
    # total covers the Gaussian tails leaking across bin edges)
    omega = np.linspace(-1.0, 12.0, 651)
    dos = np.asarray(CUBIC.density_of_states(omega, grid=16, broadening=0.05))
    np.testing.assert_allclose(np.trapezoid(dos, omega), 3.0, rtol=1e-5)
    frequencies = np.sqrt(np.clip(np.linalg.eigvalsh(eq19(periodic_grid(16, 3), 15, 5)), 0, None))
    edges = np.linspace(0.0, 11.0, 12)
    counts = np.histogram(frequencies, bins=edges)[0] / 16**3
    inside = [(omega >= a) & (omega <= b) for a, b in zip(edges[:-1], edges[1:])]
    binned = [np.trapezoid(dos[m], omega[m]) for m in inside]
    np.testing.assert_allclose(binned, counts, atol=0.01)
    chain_dos = np.asarray(Chain().density_of_states(omega, grid=64, broadening=0.05))
    np.testing.assert_allclose(np.trapezoid(chain_dos, omega), 3.0, rtol=1e-5)


# ---------------------------------------------------------------- differentiability


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_gradients_through_constructor_match_finite_differences():
    # central differences with h = 1e-4 on k1 = 15: truncation h^2 f''' / 6 ~ 1e-9 relative,
    # rounding 1e-16 / 1e-4 ~ 1e-12; tolerance 1e-6 relative
    h = 1e-4
    n = np.array([[0.0, 0.0, 1.0], [0.3, -0.5, 0.81]])  # the first one has degenerate transverse modes
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    q = RNG.uniform(-np.pi, np.pi, (3, 3))
    labels = ["recoil_density", "dynamical_matrix", "green_infinite", "green_finite"]

    def quantities(k1):
        lattice = SimpleCubic(k1=k1)
        return jnp.stack(
            [
                jnp.sum(lattice.recoil_density(n) * jnp.arange(9.0).reshape(3, 3)),
                jnp.sum(lattice.dynamical_matrix(q) ** 2),
                jnp.sum(lattice.green_function([(0, 0, 0), (1, 0, 0)], n_radial=12, n_face=12)),
                jnp.sum(lattice.green_function([(0, 0, 0), (1, 2, 0)], size=6)),
            ]
        )

    grad = np.asarray(jax.jit(jax.jacfwd(quantities))(15.0))
    assert np.all(np.isfinite(grad))
    # reverse mode agrees with forward mode to rounding
    np.testing.assert_allclose(jax.jit(jax.grad(lambda k1: jnp.sum(quantities(k1))))(15.0), np.sum(grad), rtol=1e-12)
    fd = central_difference(jax.jit(quantities), 15.0, h)
    for label, value, expected in zip(labels, grad, fd):
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=label)


def test_jit_and_vmap_over_springs():
    # inside jit / vmap the fields are tracers and the checks are skipped; values must match eager
    cells = [(0, 0, 0), (0, 0, 1)]
    jitted = jax.jit(lambda k1: SimpleCubic(k1=k1).green_function(cells, size=6))(15.0)
    np.testing.assert_allclose(jitted, CUBIC.green_function(cells, size=6), atol=1e-15)
    q = RNG.uniform(-np.pi, np.pi, (4, 3))
    k1s = jnp.array([5.0, 10.0, 15.0])
    batched = jax.vmap(lambda k1: SimpleCubic(k1=k1).frequencies(q))(k1s)
    for k1, row in zip(np.asarray(k1s), batched):
        np.testing.assert_allclose(row, np.sqrt(np.linalg.eigvalsh(eq19(q, k1, 5.0))), rtol=1e-12)
    speeds = jax.vmap(lambda kappa: Chain(kappa_par=kappa).dynamical_matrix(np.zeros((1, 1)))[0, 2, 2])(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(speeds, [0.5, 1.0])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SimpleCubic(k2=0.0), "unstable"),
        (lambda: SimpleCubic(k1=-1.0), "unstable"),
        (lambda: SimpleCubic(k2=-0.5), "unstable"),
        (lambda: Chain(k_perp=0.0, kappa_perp=0.0), "unstable"),
        (lambda: SimpleCubic(confinement=-1.0), "confinement"),
        (lambda: SimpleCubic(mass=0.0), "framework mass"),
        (lambda: SimpleCubic(mass=-2.0), "framework mass"),
        (lambda: SimpleCubic(spacing=0.0), "spacing"),
        (lambda: Chain(spacing=-1.0), "spacing"),
        (lambda: SimpleCubic(k1=np.nan), "spring"),
        (lambda: SimpleCubic(confinement=(1.0, 2.0)), "confinement"),
        (lambda: Lattice([(1, 0)], k_long=1.0), "offsets"),
        (lambda: Lattice([(0, 0, 0)], k_long=1.0), "non-zero"),
        (lambda: Lattice([(1, 0, 0), (0, 1, 0)], k_long=[1.0, 2.0, 3.0]), "k_long"),
    ],
)
def test_bad_input_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_confined_chain_without_springs_is_stable():
    # confinement alone makes every displacement cost energy: allowed (a set of Einstein oscillators)
    chain = Chain(k_par=0.0, k_perp=0.0, kappa_par=1.0, kappa_perp=2.0)
    np.testing.assert_allclose(chain.green_function([(0,), (1,)])[0, 0], np.diag([0.5, 0.5, 1.0]), atol=1e-14)
