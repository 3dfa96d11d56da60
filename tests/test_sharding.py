"""Beyond one device: ensembles laid out over devices (jaxion.sharding) and one lattice split into
slabs over devices (jaxion.slab), on four host (CPU) devices (tests/conftest.py sets
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before jax starts).

Independent routes: the unsharded ``jax.vmap`` batch on one device for the ensembles; the
single-device ``jaxion.full.simulate`` (same solver, step and size) for the slabs; the same keys
on 1, 2 and 4 devices for the stochastic runs.

Tolerances. Ensembles: every member runs the same arithmetic on the same inputs whichever device
it lands on; the deterministic ensembles agree bitwise on CPU (observed), and the test allows 1e-12
of each quantity's scale. The random draws of the stochastic runs are bitwise the same on 1, 2 and 4
devices (each member's key is its own, and partitionable threefry's bits do not depend on the
layout: asserted exactly); their trajectories agree bitwise on 2 and 4 devices, while the
unpartitioned one-device program is compiled differently (its vectorised loops and contracted
multiply-adds round differently): single-ulp differences that the dynamics carries to 4e-15 of
the positions' scale after 100 Langevin steps (observed); 1e-12 is asserted.

Slabs: the spring stencil, the sites and the ion's force are the single-device arithmetic (the
sites' displacements are assembled by an exact psum), but XLA fuses the halo exchange
differently, so single-ulp differences (contracted multiply-adds) enter and grow over the run:
observed 1e-15 in positions and velocities after 400 Verlet steps; the issue's bound 1e-12 is
asserted. The energy is a sum over the lattice in another order: 1e-12 of its scale.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion  # noqa: F401  (float64)
import jaxion.thermal as jt
from jaxion import full, kernel, local
from jaxion.lattice import Chain, Lattice, SimpleCubic
from jaxion.potentials import Gaussian
from jaxion.sharding import device_mesh, member_keys, sharded_map
from jaxion.simulation import pass_geometry
from jaxion.slab import simulate_sharded
from jaxion.system import System

DEVICES = 4


def devices(count):
    """The first ``count`` devices of the default backend, or of the host (CPU) when the default
    backend has fewer (a machine with one GPU still has the four forced host devices)."""
    pool = jax.devices() if jax.device_count() >= count else jax.devices("cpu")
    assert len(pool) >= count, "tests/conftest.py sets --xla_force_host_platform_device_count=4 before jax starts"
    return pool[:count]


def assert_trees_close(actual, expected, rtol=1e-12):
    """Every array leaf equal to ``rtol`` of that leaf's largest finite magnitude (non-finite entries,
    e.g. ``ts`` past a stop, equal exactly)."""
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape
        finite = np.isfinite(e)
        np.testing.assert_array_equal(np.isfinite(a), finite)
        np.testing.assert_array_equal(a[~finite], e[~finite])
        scale = np.max(np.abs(e[finite]), initial=0.0)
        np.testing.assert_allclose(a[finite], e[finite], rtol=0, atol=rtol * max(scale, 1e-300))


# --- ensembles over devices ------------------------------------------------------------------

# One site; the full description on a 16-mass chain (compiles faster than a cubic box; the slab
# tests below run the cubic lattice), kernel and local on the simple cubic framework.
ONE_SITE = System(SimpleCubic(), Gaussian(0.05, 0.5), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
CHAIN_SITE = System(Chain(), Gaussian(0.05, 0.5), sites=[(0,)], mass=(jnp.inf, jnp.inf, 1.0))
START, STOP = pass_geometry(ONE_SITE, (0.3, 0.2))
SPEEDS = jnp.linspace(4.0, 8.0, 64)  # 64 members; every pass completes within T1
T1 = 1.8
DESCRIPTIONS = {
    "full": lambda speed: full.simulate(CHAIN_SITE, START, jnp.array([0.0, 0.0, 1.0]) * speed, T1, stop_z=STOP,
                                        size=16, dt=0.01, solver="verlet", n_save=3),
    "kernel": lambda speed: kernel.simulate(ONE_SITE, START, jnp.array([0.0, 0.0, 1.0]) * speed, T1, stop_z=STOP,
                                            size=6, dt=0.01, n_save=3, block=None),  # direct history sum: compiles faster
    "local": lambda speed: local.simulate(ONE_SITE, START, jnp.array([0.0, 0.0, 1.0]) * speed, T1, stop_z=STOP,
                                          size=6, dt=0.01, n_save=3),
}


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_sharded_ensemble_equals_unsharded_batch(description):
    run = DESCRIPTIONS[description]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sound returning through the 6^3 box: same in both
        expected = jax.vmap(run)(SPEEDS)
        mesh = device_mesh(devices(DEVICES))
        actual = sharded_map(run, SPEEDS, mesh=mesh, jit=False)
    assert actual.position_final.sharding.spec[0] == "batch"  # laid over the devices, not gathered to one
    assert bool(jnp.all(actual.position_final[:, 2] >= STOP))  # every pass completed
    assert_trees_close(actual, expected)


def test_padding_stripped_and_pytrees_of_arguments():
    # 6 members over 4 devices (padded to 8 with copies of the last): two batched pytrees, a PRNG key
    def member(key, pair):
        scale, shift = pair
        return dict(sample=scale * jax.random.normal(key, (3,)) + shift, scale=scale)

    keys = member_keys(5, 6)
    pairs = (jnp.arange(1.0, 7.0), jnp.arange(6.0)[:, None] * jnp.ones(3))
    actual = sharded_map(member, keys, pairs, mesh=device_mesh(devices(DEVICES)))
    expected = jax.jit(jax.vmap(member))(keys, pairs)
    assert actual["sample"].shape == (6, 3)
    assert_trees_close(actual, expected)


def test_member_keys_depend_only_on_base_key_and_index():
    keys = jax.random.key_data(member_keys(jax.random.key(11), 10))
    np.testing.assert_array_equal(keys[:4], jax.random.key_data(member_keys(11, 4)))
    np.testing.assert_array_equal(keys[7], jax.random.key_data(jax.random.fold_in(jax.random.key(11), 7)))
    # trajectory_keys: key i the same for any count (partitionable threefry, jax's default)
    np.testing.assert_array_equal(jax.random.key_data(jt.trajectory_keys(3, 10))[:4],
                                  jax.random.key_data(jt.trajectory_keys(3, 4)))


def test_thermal_ensemble_independent_of_device_count():
    # The same keys on 1, 2 and 4 devices (run_ensemble lays each batch over the mesh): the Maxwell
    # draws bitwise, the Langevin trajectories to rounding (module docstring). 8 trajectories of
    # 0.5 ps (100 steps), the follow-up model with the 8 atoms of the ion's cell (compiles faster).
    model = jt.follow_up_model(4000.0, neighbours=jt.NeighbourSites.cell_corners(3.0))
    run = jt.ThermalRun(model, jnp.asarray(500.0), "langevin", 0.5, 0.005, 25)
    keys = jt.trajectory_keys(7, 8)
    one, *others = [jt.run_ensemble(run, keys, batch=8, progress=False, mesh=device_mesh(devices(count)))
                    for count in (1, 2, 4)]
    assert np.all(np.asarray(one.finite))
    assert float(jnp.std(one.positions[:, -1, 0])) > 1e-3  # the members differ
    for other in others:
        np.testing.assert_array_equal(other.velocities[:, 0], one.velocities[:, 0])  # the draws
        assert_trees_close(other, one)


def test_ensemble_bad_input():
    mesh = device_mesh(devices(2))
    with pytest.raises(ValueError, match="empty"):
        sharded_map(jnp.sin, jnp.zeros((0, 3)), mesh=mesh)
    with pytest.raises(ValueError, match="leading axes differ"):
        sharded_map(jnp.add, jnp.zeros(4), jnp.zeros(5), mesh=mesh)
    with pytest.raises(ValueError, match="leading batch axis"):
        sharded_map(jnp.sin, jnp.asarray(1.0), mesh=mesh)
    with pytest.raises(ValueError, match="no axis 'speeds'"):
        sharded_map(jnp.sin, jnp.zeros(4), mesh=mesh, axis_name="speeds")
    with pytest.raises(ValueError, match="at least one batched"):
        sharded_map(jnp.sin, mesh=mesh)
    with pytest.raises(ValueError, match="jit=False"):  # an entry point that checks concrete values
        sharded_map(DESCRIPTIONS["full"], SPEEDS[:4], mesh=mesh)
    with pytest.raises(ValueError, match="between 1 and"):
        device_mesh(99)


# --- one lattice over devices ------------------------------------------------------------------

# Eight sites on the corners of a cell, in planes x = -1 (slab 3 of 4: the periodic wrap) and x = 0
# (slab 0), all axes of the ion mobile. A pass beside the cage along z, and a slow ion trapped
# inside it (kinetic energy 0.005 against a barrier of 0.037 through a face): both run 4 periods
# (400 Verlet steps) with the same stop plane, so each route compiles once for both.
CAGE = System(SimpleCubic(), Gaussian(0.5, 0.5), sites=[(i, j, k) for i in (-1, 0) for j in (-1, 0) for k in (-1, 0)],
              mass=(1.0, 1.0, 1.0))
SLAB_RUN = dict(size=24, dt=0.01, solver="verlet", n_save=9, save_sites=True)
RUNS = {
    "single pass": (jnp.array([-1.0, 1.0, -5.5]), jnp.array([0.1, 0.0, 3.0])),
    "trapped": (jnp.array([-1.0, -1.0, -1.0]), jnp.array([0.3, 0.2, 0.5])),
}


@pytest.mark.parametrize("name", RUNS)
def test_slab_sharded_full_lattice_equals_single_device(name):
    position, velocity = RUNS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sound crosses the 24^3 box within 4 periods: same in both
        expected = full.simulate(CAGE, position, velocity, 4.0, stop_z=3.5, **SLAB_RUN)
        actual = simulate_sharded(CAGE, position, velocity, 4.0, stop_z=3.5, mesh=device_mesh(devices(DEVICES)),
                                  **SLAB_RUN)
    z_end = float(expected.position_final[2])
    if name == "single pass":
        assert z_end >= 3.5 and float(expected.t_final) < 4.0
    else:
        assert float(jnp.max(jnp.abs(expected.position - position))) < 1.0 and float(expected.t_final) == 4.0
    assert float(jnp.max(jnp.abs(expected.site_displacement))) > 1e-4  # the sites (both slabs) moved
    for field in ("position", "velocity", "position_final", "velocity_final", "site_displacement"):
        np.testing.assert_allclose(getattr(actual, field), getattr(expected, field), rtol=0, atol=1e-12, err_msg=field)
    np.testing.assert_array_equal(actual.ts, expected.ts)
    np.testing.assert_array_equal(actual.t_final, expected.t_final)
    assert_trees_close((actual.energy, actual.energy_final), (expected.energy, expected.energy_final))


def test_slab_bad_input():
    with pytest.raises(ValueError, match="multiple of the 4 devices"):
        simulate_sharded(CAGE, *RUNS["trapped"], 0.1, size=22, dt=0.01, mesh=device_mesh(devices(4)))
    # bonds reaching two planes need two planes per slab: L = 4 over 4 devices leaves one
    reach_two = Lattice([(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0)], k_long=[15, 15, 15, 1], k_trans=[2, 2, 2, 1])
    wide = System(reach_two, Gaussian(0.01, 0.5), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
    with pytest.raises(ValueError, match="fewer than the bonds' reach of 2"):
        simulate_sharded(wide, jnp.zeros(3), jnp.ones(3), 0.1, size=4, dt=0.01, mesh=device_mesh(devices(4)))
    with pytest.raises(ValueError, match="no axis 'x'"):
        simulate_sharded(CAGE, *RUNS["trapped"], 0.1, size=24, dt=0.01, mesh=device_mesh(devices(4)), axis_name="x")
    with pytest.raises(ValueError, match="solver must be one of"):
        simulate_sharded(CAGE, *RUNS["trapped"], 0.1, size=24, dt=0.01, solver="euler", mesh=device_mesh(devices(4)))


# --- the multi-host example, as one process ----------------------------------------------------


def test_multi_host_example_runs_as_one_process(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "multi_host_ensemble.py"
    spec = importlib.util.spec_from_file_location("multi_host_ensemble", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    speeds, losses = example.main(["--quick", "--method", "local", "--out", str(tmp_path)])
    assert speeds.shape == losses.shape == (8,) and np.all(np.isfinite(losses))
    assert (tmp_path / "multi_host_ensemble.json").exists()
