"""Landscapes of the thermal model: rigid, linear response, relaxed (exact and tabulated), barriers.

Each quantity is checked against an independent route: the Schur/Green relaxation against a
brute-force minimisation of the whole periodic lattice, linear response against the relaxation
at weak coupling, forces against finite differences, the spline against known functions. Compiles
dominate the cost, so each test compiles few functions (small stencils and grids).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jaxion  # noqa: F401  (float64)
from jaxion.thermal import landscape as ls
from jaxion.thermal.model import follow_up_model
from jaxion.thermal.neighbours import NeighbourSites

STEP = 1e-4  # Å, central differences


def _around(position):
    """``position`` and its 6 central-difference neighbours, ``(7, 3)``."""
    eye = STEP * np.eye(3)
    return jnp.asarray(np.concatenate([position[None], position + eye, position - eye]))


def _central_force(energies):
    """``-grad`` from the energies at ``_around`` points."""
    return -(energies[1:4] - energies[4:7]) / (2 * STEP)


@eqx.filter_jit
def _probe(landscape, points):
    """Energies and forces of a landscape at ``points (P, 3)``."""
    return jax.vmap(landscape.energy)(points), jax.vmap(landscape.force)(points)


def test_spline_is_exact_at_nodes_and_fourth_order():
    evaluate = jax.jit(jax.vmap(ls.bspline_value, in_axes=(None, 0)))
    rng = np.random.default_rng(0)
    table = rng.normal(size=(8, 8, 8))
    nodes = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    shifted = nodes + np.array([8, -16, 24])  # whole periods away: the same values
    values = evaluate(ls.bspline_coefficients(table), jnp.asarray(shifted, dtype=float))
    np.testing.assert_allclose(values, table.reshape(-1), atol=1e-12)

    def smooth(x):  # periodic on [0, 1)^3
        return np.cos(2 * np.pi * x[..., 0]) * np.cos(2 * np.pi * (x[..., 1] + 0.3)) + np.sin(2 * np.pi * x[..., 2])

    points = rng.uniform(0.0, 1.0, (200, 3))
    errors = []
    for n in (8, 16):
        axis = np.arange(n) / n
        grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
        approx = evaluate(ls.bspline_coefficients(smooth(grid)), jnp.asarray(points * n))
        errors.append(np.max(np.abs(np.asarray(approx) - smooth(points))))
    assert errors[1] < 2e-3
    assert 12.0 < errors[0] / errors[1] < 20.0  # h^4: a factor 16 per halving


def test_site_hessian_blocks_match_full_hessian():
    model = follow_up_model(4000.0, neighbours=NeighbourSites.cell_corners(3.0))
    position = jnp.array([0.7, 1.1, 2.3])
    u = 0.05 * jnp.asarray(np.random.default_rng(1).normal(size=(model.neighbours.capacity, 3)))
    blocks, full = eqx.filter_jit(
        lambda m, r, v: (ls._site_hessians(m, r, v), jax.hessian(lambda w: m.interaction(r, w))(v))
    )(model, position, u)
    index = np.arange(model.neighbours.capacity)
    np.testing.assert_allclose(blocks, full[index, :, index, :], rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(full.at[index, :, index, :].set(0.0))) == 0.0  # a pair sum: block diagonal


def _periodic_brute_force(model, position):
    """Minimise elastic + interaction energy over all 3 L^3 displacements of the periodic box
    with its centre of mass held fixed (``u = v - mean(v)``) by L-BFGS: (energy, stencil sites' u)."""
    size, lattice = model.size, model.lattice
    bonds = [tuple(b) for b in lattice.offsets]
    tensors = lattice.bond_tensors()
    home = np.floor(np.asarray(position) / float(lattice.spacing)).astype(int)
    cells = np.mod(home + np.array(model.neighbours.offsets), size)

    def energy(flat):
        v = flat.reshape(size, size, size, 3)
        u = v - jnp.mean(v, axis=(0, 1, 2))
        elastic = 0.0
        for bond, tensor in zip(bonds, tensors):  # each bond once: k/2 (u_n - u_{n+b}) Phi_b (...)
            d = u - jnp.roll(u, shift=tuple(-b for b in bond), axis=(0, 1, 2))
            elastic = elastic + 0.5 * jnp.sum((d @ tensor) * d)
        return elastic + model.interaction(position, u[cells[:, 0], cells[:, 1], cells[:, 2]])

    value_and_grad = jax.jit(jax.value_and_grad(energy))
    fun = lambda x: tuple(np.asarray(a, dtype=float) for a in value_and_grad(jnp.asarray(x)))
    result = scipy.optimize.minimize(fun, np.zeros(3 * size**3), jac=True, method="L-BFGS-B",
                                     options={"maxiter": 3000, "gtol": 1e-11, "ftol": 1e-16, "maxcor": 30})
    v = result.x.reshape(size, size, size, 3)
    u = v - v.mean(axis=(0, 1, 2))
    return result.fun, u[cells[:, 0], cells[:, 1], cells[:, 2]]


def test_schur_route_matches_whole_lattice_minimisation():
    # like for like: an 8^3 periodic box, its own Green's function, every stencil site relaxed
    # (a 4 Å cut-off: 32 sites, to keep the test small)
    model = follow_up_model(4000.0, cutoff=4.0, size=8)
    relaxation = ls.StaticRelaxation(model, relax_cutoff=None)
    positions = jnp.array([[1.1, 1.4, 1.9], [0.75, 0.8, 0.9]])
    solved = eqx.filter_jit(lambda rel, r: jax.vmap(rel.solve)(r))(relaxation, positions)
    assert np.all(np.asarray(solved.residual) < 1e-8)
    for position, energy, displacements in zip(positions, solved.energy, solved.displacements):
        reference, sites = _periodic_brute_force(model, position)
        assert float(model.rigid_energy(position)) - float(energy) > 1.0  # a real relaxation (meV)
        assert abs(float(energy) - reference) < 1e-6  # meV
        np.testing.assert_allclose(displacements, sites, atol=1e-6)  # Å


def test_linear_response_is_the_second_order_of_the_relaxation():
    # U_rel - U_lr = O(U0^3) at weak coupling (same stencil, same Green's function)
    position = jnp.array([1.0, 1.2, 1.7])
    model = follow_up_model(4000.0, cutoff=4.0)  # a smaller stencil: 32 sites, every one relaxed
    relaxation = ls.StaticRelaxation(model, relax_cutoff=None)
    linear = ls.LinearResponseLandscape(model)

    scaled = lambda landscape, u0: eqx.tree_at(lambda x: x.model.potential.u0, landscape, u0)

    @eqx.filter_jit
    def energies(u0):  # relaxed, linear response
        return scaled(relaxation, u0).solve(position).energy, scaled(linear, u0).energy(position)

    pairs = np.array([energies(jnp.asarray(u0)) for u0 in (500.0, 250.0, 125.0, 4001.0, 3999.0)])
    differences = pairs[:3, 0] - pairs[:3, 1]
    assert np.all(differences > 0)  # measured: above its quadratic approximation here
    np.testing.assert_allclose(differences[:-1] / differences[1:], 8.0, rtol=0.05)

    # the relaxed energy is differentiable in the model's parameters (implicit function theorem)
    slope = eqx.filter_jit(jax.grad(lambda u0: scaled(relaxation, u0).energy(position)))(jnp.asarray(4000.0))
    np.testing.assert_allclose(slope, (pairs[3, 0] - pairs[4, 0]) / 2.0, rtol=1e-7)


def _numpy_rigid(position, u0=4000.0, screening=0.5, inner=4.5, outer=6.0):
    """Independent route to the rigid landscape: NumPy sum of the switched Yukawa over a block of
    sites twice the cut-off wide (no stencil), meV."""
    grid = np.arange(-4, 6)
    sites = 3.0 * np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    r = np.linalg.norm(sites - position, axis=1)
    x = np.clip((r - inner) / (outer - inner), 0.0, 1.0)
    return float(np.sum((1 - x**3 * (10 - 15 * x + 6 * x**2)) * u0 * np.exp(-r / screening) / r))


def test_relaxed_landscape_direct_and_tabulated():
    model = follow_up_model(4000.0)
    relaxation = ls.StaticRelaxation(model, relax_cutoff=3.5)
    centre, face, near_site = np.full(3, 1.5), np.array([1.5, 1.5, 0.0]), np.full(3, 0.2)
    general = np.array([1.0, 1.3, 1.75])
    points = jnp.concatenate([jnp.asarray(np.stack([centre, face, near_site])), _around(general)])
    energies, forces = _probe(relaxation, points)
    # forces (implicit-function derivative) against finite differences of relaxed energies
    np.testing.assert_allclose(forces[3], _central_force(energies[3:]), rtol=1e-7, atol=1e-5)
    # bounded: next to a site (rigid energy ~ 10 eV above the minimum) the relaxed energy is ~ 1 eV
    assert 300.0 < float(energies[2] - energies[0]) < 2000.0

    rigid_landscape = ls.RigidLandscape(model)
    rigid_energies, rigid_forces = _probe(rigid_landscape, points)
    np.testing.assert_allclose(rigid_forces[3], _central_force(rigid_energies[3:]), rtol=1e-7, atol=1e-6)
    barriers = {"rigid": ls.migration_barrier(rigid_landscape), "relaxed": ls.migration_barrier(relaxation)}
    for name, barrier in barriers.items():
        assert bool(barrier.is_minimum) and bool(barrier.is_saddle), name
    rigid, relaxed = barriers["rigid"], barriers["relaxed"]
    np.testing.assert_allclose(rigid.barrier, _numpy_rigid(face) - _numpy_rigid(centre), rtol=1e-12)
    np.testing.assert_allclose([relaxed.minimum_energy, relaxed.saddle_energy], energies[:2], rtol=0, atol=1e-9)
    # measured, not assumed: relaxation lowers both, the saddle more than the minimum
    lowered_saddle = rigid.saddle_energy - relaxed.saddle_energy
    lowered_minimum = rigid.minimum_energy - relaxed.minimum_energy
    assert lowered_saddle > lowered_minimum > 0.0
    assert rigid.barrier > relaxed.barrier > 0.0

    # tabulated: exact at the nodes (centre and face centre are nodes of an even grid, the face
    # centre through a cubic symmetry operation; the saturation shifts them by ~1e-11 meV),
    # forces = -grad, the site saturated (not NaN), bounded below near the sites
    table = relaxation.tabulate(grid=6)
    assert float(table.residual) < 1e-7 and np.all(np.isfinite(table.coefficients))
    np.testing.assert_allclose(table.table[0, 0, 0], -table.limit, rtol=1e-6)
    shift = jnp.array([3.0, -6.0, 9.0])  # whole cells away: the same energy
    rays = np.random.default_rng(2).normal(size=(16, 3))
    near = (np.linspace(0.1, 0.9, 16)[:, None] * rays / np.linalg.norm(rays, axis=1, keepdims=True))
    table_energies, table_forces = _probe(
        table, jnp.concatenate([points[:2], points[:2] + shift, jnp.asarray(near), _around(general)])
    )
    np.testing.assert_allclose(table_energies[:2], energies[:2], rtol=0, atol=1e-8)
    np.testing.assert_allclose(table_energies[2:4], energies[:2], rtol=0, atol=1e-8)
    assert np.all(np.asarray(table_energies[4:20]) > float(energies[0]) + 200.0)  # no spurious wells
    np.testing.assert_allclose(table_forces[20], _central_force(table_energies[20:]), rtol=1e-7, atol=1e-6)


def test_linear_response_barrier_forces_and_unboundedness():
    model = follow_up_model(4000.0)
    linear = ls.LinearResponseLandscape(model)
    barrier = ls.migration_barrier(linear)
    assert bool(barrier.is_minimum) and bool(barrier.is_saddle)
    assert 40.0 < float(barrier.barrier) < 45.5  # softened below the rigid 45.54 meV
    turnover = ls.linear_response_turnover(linear)
    # the turnover on the body diagonal: a saddle (one negative curvature) guarding the collapse,
    # lower than the rigid landscape there
    assert 1.3 < float(turnover.distance) < 1.7
    assert int(np.sum(np.asarray(turnover.curvatures) < 0)) == 1
    assert 0.0 < float(turnover.energy) < float(turnover.rigid_energy)
    # inside it U_lr falls monotonically towards the site, far below the cell-centre minimum
    radii = np.linspace(0.3, float(turnover.distance) - 0.05, 12)
    points = np.concatenate([radii[:, None] * np.ones(3) / np.sqrt(3.0), _around(np.array([1.0, 1.3, 1.75]))])
    energies, forces = _probe(linear, jnp.asarray(points))
    assert np.all(np.diff(np.asarray(energies[:12])) > 0)
    assert float(energies[0] - barrier.minimum_energy) < -1e5  # meV
    # and its force is -grad (finite differences)
    np.testing.assert_allclose(forces[12], _central_force(energies[12:]), rtol=1e-7, atol=1e-6)


def test_input_validation():
    model = follow_up_model(4000.0)
    with pytest.raises(ValueError, match="IonInFramework"):
        ls.RigidLandscape("not a model")
    with pytest.raises(ValueError, match="relax_cutoff"):
        ls.StaticRelaxation(model, relax_cutoff=-1.0)
    with pytest.raises(ValueError, match="grid"):
        ls.relaxed_landscape(model, grid=3)
    with pytest.raises(ValueError, match="scale"):
        ls.relaxed_landscape(model, grid=4, scale=100.0, limit=10.0)
    with pytest.raises(ValueError, match="direction"):
        ls.linear_response_turnover(ls.RigidLandscape(model), direction=(1.0, -1.0, 0.0))
