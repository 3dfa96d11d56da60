"""Bad input and failed physics are reported, eagerly and under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

Each bad case is tried in every mode and must raise, with a message naming the argument: a
``ValueError`` where the values are concrete (eager, and ``jax.grad`` outside ``jit``), a run-time
error (``RuntimeError``: ``JaxRuntimeError`` / ``EquinoxRuntimeError``) where they are traced. The
independent route for the valid inputs is the eager call: every transformed call must reproduce
it (to rounding, 1e-12 relative), so the checks change no valid result.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxion as jx
from jaxion import fitting, full, kernel, local, materials, simulation
from jaxion.elastic import ElasticContinuum

INF = jnp.inf
TRACED = RuntimeError  # JaxRuntimeError (jax.jit) and EquinoxRuntimeError (vmap) both derive from it
MODES = ("eager", "jit", "vmap", "grad", "jit_grad")
EXPECTED = {"eager": ValueError, "grad": ValueError, "jit": TRACED, "vmap": TRACED, "jit_grad": TRACED}


def transformed(f, mode, n_args):
    """``f`` of ``n_args`` floats under ``mode`` (vmap pairs each argument with the valid value)."""
    if mode == "eager":
        return f
    if mode == "jit":
        return jax.jit(f)
    if mode == "grad":
        return jax.grad(lambda *a: jnp.sum(f(*a)), argnums=tuple(range(n_args)))
    if mode == "jit_grad":
        return jax.jit(jax.grad(lambda *a: jnp.sum(f(*a)), argnums=tuple(range(n_args))))
    return jax.vmap(f)


def call(f, mode, valid, name, value):
    """``f`` under ``mode`` at the valid arguments with ``name`` set to ``value``."""
    arguments = dict(valid, **{name: value})
    if mode == "vmap":
        args = [jnp.array([valid[key], arguments[key]]) for key in valid]
    else:
        args = [jnp.asarray(arguments[key]) for key in valid]
    return TRANSFORMED[(f, mode)](*args)


TRANSFORMED = {}


def check_bad(f, valid, name, value, fragment, mode):
    """The case raises the mode's error type with ``fragment`` in the message (never a number)."""
    TRANSFORMED.setdefault((f, mode), transformed(f, mode, len(valid)))
    with pytest.raises(EXPECTED[mode]) as caught:
        result = call(f, mode, valid, name, value)
        jax.block_until_ready(result)
    assert fragment in str(caught.value), str(caught.value)[:400]


def check_valid(f, valid):
    """Every mode reproduces the eager value at the valid arguments (1e-12 relative), and ``jit(grad)``
    the eager gradient (1e-10)."""
    args = [jnp.asarray(value) for value in valid.values()]
    eager = np.asarray(f(*args))
    assert np.all(np.isfinite(eager))
    for mode in MODES:
        TRANSFORMED.setdefault((f, mode), transformed(f, mode, len(valid)))
    np.testing.assert_allclose(TRANSFORMED[(f, "jit")](*args), eager, rtol=1e-12)
    np.testing.assert_allclose(TRANSFORMED[(f, "vmap")](*[jnp.stack([a, a]) for a in args])[1], eager, rtol=1e-12)
    gradient = TRANSFORMED[(f, "grad")](*args)
    assert np.all(np.isfinite(np.asarray(gradient)))
    np.testing.assert_allclose(TRANSFORMED[(f, "jit_grad")](*args), gradient, rtol=1e-10, atol=1e-300)


# --- Eq. 14, the chain's closed form: every case in every mode ---------------------------------------

def chain_loss(k_par, width, speed, s):
    chain = jx.Chain(k_par=k_par, k_perp=k_par, kappa_par=1.0, kappa_perp=1.0)
    return jx.loss_chain_closed_form(chain, jx.Gaussian(0.01, width), speed, s)


CHAIN_VALID = dict(k_par=24.75, width=1.0, speed=2.0, s=0.5)
CHAIN_CASES = [
    ("k_par", -30.0, "unstable"),  # omega^2 = 1 + 4 k sin^2(q/2) < 0 at the zone boundary
    ("k_par", np.nan, "spring constants"),
    ("width", -1.0, "Gaussian width"),
    ("width", 0.0, "Gaussian width"),
    ("speed", -2.0, "speed"),
    ("speed", 0.0, "speed"),
    ("speed", np.nan, "speed"),
    ("s", np.nan, "impact parameter"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, value, fragment", CHAIN_CASES)
def test_chain_closed_form_rejects(name, value, fragment, mode):
    check_bad(chain_loss, CHAIN_VALID, name, value, fragment, mode)


def test_chain_closed_form_valid_in_every_mode():
    check_valid(chain_loss, CHAIN_VALID)


# --- Eq. 13 and the drag: the cases -----------------------------------------------------------

def cubic_system(k1=15.0, k2=5.0, width=1.0, mass=1.0):
    return jx.System(jx.SimpleCubic(k1=k1, k2=k2), jx.Gaussian(0.01, width), mass=jnp.stack([INF, INF, mass]))


def perturbative(k1, mass, x0):
    return jx.loss_perturbative(cubic_system(k1=k1, mass=mass), 2.0, jnp.stack([x0, 0.0]), n_radial=2, n_face=1)


PERTURBATIVE_VALID = dict(k1=15.0, mass=1.0, x0=0.5)


@pytest.mark.parametrize("mode", ["eager", "jit", "grad"])
@pytest.mark.parametrize("name, value, fragment", [("k1", -5.0, "unstable"), ("mass", 0.0, "ion mass"),
                                                   ("mass", -1.0, "ion mass"), ("x0", np.nan, "start")])
def test_perturbative_rejects(name, value, fragment, mode):
    check_bad(perturbative, PERTURBATIVE_VALID, name, value, fragment, mode)


def test_perturbative_vmap_over_springs_raises_for_any_bad_member():
    """The issue's example: jit(vmap) over k1 = [15, -5, 0] returned three finite numbers."""
    f = jax.jit(jax.vmap(lambda k1: perturbative(k1, 1.0, 0.5)))
    with pytest.raises(TRACED, match="unstable"):
        jax.block_until_ready(f(jnp.array([15.0, -5.0, 0.0])))
    # valid members run, and give the eager value (1e-12 relative)
    np.testing.assert_allclose(f(jnp.array([15.0, 15.0, 15.0])), perturbative(15.0, 1.0, 0.5), rtol=1e-12)


def test_perturbative_refuses_singular_path_like_single_pass():
    system = jx.System(jx.SimpleCubic(), jx.Yukawa(0.05, 0.5))
    for entry in (jx.loss_perturbative, jx.loss_low_speed):
        with pytest.raises(ValueError, match="runs through the interacting site"):
            entry(system, 2.0, (0.0, 0.0))
    with pytest.raises(TRACED, match="runs through the interacting site"):
        jax.jit(lambda x0: jx.loss_low_speed(system, 2.0, jnp.stack([x0, 0.0]), n_panels=2, order=2))(0.0)
    with pytest.raises(ValueError, match="runs through the interacting site"):
        jx.single_pass(system, 3.0, (0.0, 0.0), method="local")


def drag(k2, z):
    return jx.drag_tensor(cubic_system(k2=k2), jnp.stack([0.5, 0.0, z]))[2, 2]


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap", "grad"])
@pytest.mark.parametrize("name, value, fragment", [("k2", -1.0, "unstable"), ("z", np.nan, "sigma")])
def test_drag_tensor_rejects(name, value, fragment, mode):
    check_bad(drag, dict(k2=5.0, z=0.3), name, value, fragment, mode)


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap", "grad"])
def test_recoil_matrix_and_low_speed_reject(mode):
    recoil = lambda k1: jx.recoil_matrix(jx.SimpleCubic(k1=k1), n_theta=4, n_phi=8)[0, 0]
    check_bad(recoil, dict(k1=15.0), "k1", -5.0, "unstable", mode)
    continuum = lambda density: jx.recoil_matrix(ElasticContinuum(density, c11=100.0, c12=50.0, c44=40.0),
                                                 n_theta=4, n_phi=8)[0, 0]
    check_bad(continuum, dict(density=3000.0), "density", -1.0, "density", mode)
    if mode != "vmap":
        low_speed = lambda speed: jx.loss_low_speed(cubic_system(), speed, (0.5, 0.0), n_panels=2, order=2)
        check_bad(low_speed, dict(speed=1.0), "speed", -1.0, "speed", mode)


# --- trajectories -------------------------------------------------------------------------------------

def test_simulate_rejects_nan_start_and_invalid_system_under_jit():
    system = cubic_system()
    run = lambda z, mass: jx.simulate(jx.System(system.lattice, system.potential, mass=jnp.stack([INF, INF, mass])),
                                      jnp.stack([0.5, 0.0, z]), jnp.array([0.0, 0.0, 2.0]), 0.05, method="local",
                                      drag=False, softening=False, n_save=2)
    with pytest.raises(ValueError, match="position"):
        run(jnp.nan, 1.0)
    with pytest.raises(ValueError, match="ion mass"):
        run(-3.0, -1.0)
    jitted = jax.jit(run)
    with pytest.raises(TRACED, match="position"):
        jax.block_until_ready(jitted(jnp.nan, 1.0))
    with pytest.raises(TRACED, match="ion mass"):
        jax.block_until_ready(jitted(-3.0, -1.0))
    # valid: nearly free flight 3 widths from the site (force <= 0.01 * 3 exp(-4.6) = 3e-4, so the ion moves
    # (4 pi^2 / mu) F t1^2 / 2 <= 2e-5 off the straight line in t1 = 0.05): z = -3 + 2 t1 to 1e-4
    np.testing.assert_allclose(jitted(-3.0, 1.0).position_final, [0.5, 0.0, -2.9], atol=1e-4)


def test_single_pass_rejects_negative_speed_and_coarse_steps():
    system = cubic_system()
    with pytest.raises(ValueError, match="speed"):
        jx.single_pass(system, -2.0, (0.5, 0.0), method="local")
    # dt = 0.5 at v = 2: one step per 0.5 ranges of the Gaussian (width 1): 4 steps per range need dt <= 0.125
    with pytest.raises(ValueError, match=r"dt <= 0\.125"):
        jx.single_pass(system, 2.0, (0.5, 0.0), method="local", dt=0.5)
    with pytest.raises(ValueError, match=r"dt <= 0\.125"):
        local.check_step(system, jnp.zeros(3), jnp.array([0.0, 0.0, 2.0]), 10.0, dt=0.13)
    local.check_step(system, jnp.zeros(3), jnp.array([0.0, 0.0, 2.0]), 10.0, dt=0.12)
    # kernel: 2 pi omega dt < 1 with omega = omega_max = 10 for SimpleCubic(15, 5) (the curvature 0.01 adds
    # 5e-5 to omega^2): the bound is dt < 1 / (20 pi) = 0.0159
    with pytest.raises(ValueError, match="kernel method"):
        jx.single_pass(system, 2.0, (0.5, 0.0), method="kernel", dt=0.5, size=None)
    omega = float(jnp.max(system.lattice.frequencies(jnp.array([[np.pi, np.pi, np.pi], [np.pi, np.pi, 0.0],
                                                                [np.pi, 0.0, 0.0], [0.0, np.pi, np.pi]]))))
    with pytest.raises(ValueError, match="kernel method"):
        kernel.check_step(system, jnp.zeros(3), jnp.array([0.0, 0.0, 0.01]), 1.0, dt=1.01 / (2 * np.pi * omega))
    kernel.check_step(system, jnp.zeros(3), jnp.array([0.0, 0.0, 0.01]), 1.0, dt=0.99 / (2 * np.pi * omega))


def test_full_step_check_includes_ion_site_curvature():
    """A strongly attractive Gaussian (phi0 = -50, width 0.3) on the path: its curvature at the centre,
    |phi0| / width^2 = 556, adds to the lattice's omega_max^2 = 100 for the sites (mass 1) and sets the
    ion's omega^2 (mu = 1): omega = sqrt(656) = 25.6, so Tsit5 (bound 0.477) needs dt < 0.477 / (2 pi 25.6)."""
    system = jx.System(jx.SimpleCubic(), jx.Gaussian(-50.0, 0.3))
    curvature = 50.0 / 0.3**2
    omega = np.sqrt(full.FullLattice(system, 9).highest_frequency() ** 2 + curvature)
    bound = full.runge_kutta_stability_limit("tsit5") / (2 * np.pi * omega)
    args = (system, jnp.array([0.0, 0.0, -3.0]), jnp.array([0.0, 0.0, 5.0]), 1.2)
    with pytest.raises(ValueError, match="forces met"):
        full.check_step(*args, size=9, dt=1.01 * bound)
    full.check_step(*args, size=9, dt=0.99 * bound)
    # the lattice alone would allow a step 2.6x larger
    assert full.runge_kutta_stability_limit("tsit5") / (2 * np.pi * 10.0) > 2.5 * bound


def test_reflected_ion_gives_nan_loss_and_completed_false():
    """A Gaussian barrier phi0 = 2 against the kinetic energy v^2 / 8 pi^2 = 0.013 at v = 1: energy
    conservation forbids the pass (independent of the integration). A low barrier (0.001) lets it through."""
    blocked = jx.System(jx.SimpleCubic(), jx.Gaussian(2.0, 1.0))
    result = jx.single_pass(blocked, 1.0, (0.0, 0.0), method="local", drag=False, softening=False)
    assert not bool(result.completed)
    assert np.isnan(float(result.loss))
    with pytest.raises(simulation.IncompletePassError, match="did not complete"):
        jx.single_pass(blocked, 1.0, (0.0, 0.0), method="local", drag=False, softening=False, incomplete="raise")
    passing = jx.single_pass(jx.System(jx.SimpleCubic(), jx.Gaussian(0.001, 1.0)), 1.0, (0.0, 0.0), method="local",
                             drag=False, softening=False)
    assert bool(passing.completed)
    # no drag, no softening: the ion's energy is conserved, so its loss is zero to the solver's tolerance
    # (rtol 1e-8 on the velocity; 1e-6 of the kinetic energy leaves a margin of 50)
    assert abs(float(passing.loss)) < 1e-6 * 1.0 / (8 * np.pi**2)


def test_energy_drift_field_and_warning():
    """energy_drift against numpy's max |E - E(0)| over the reached saves and the end (exact), and the
    warning fires above drift_tol and not below."""
    energy = jnp.array([[1.0, 1.2, 0.7, 0.0], [2.0, 2.0, 2.1, 2.0]])
    ts = jnp.array([[0.0, 1.0, 2.0, jnp.inf], [0.0, 1.0, 2.0, 3.0]])
    trajectory = simulation.Trajectory(ts=ts, position=jnp.zeros((2, 4, 3)), velocity=jnp.zeros((2, 4, 3)),
                                       energy=energy, t_final=jnp.array([2.5, 3.0]), position_final=jnp.zeros((2, 3)),
                                       velocity_final=jnp.zeros((2, 3)), energy_final=jnp.array([1.05, 1.9]))
    np.testing.assert_allclose(trajectory.energy_drift, [0.3, 0.1], rtol=1e-14)
    dissipative = dataclasses.replace(trajectory, conservative=False)
    np.testing.assert_allclose(dissipative.energy_drift, [0.2, 0.1], rtol=1e-14)
    with pytest.warns(simulation.EnergyDriftWarning, match="drift_tol=0.2"):
        simulation.check_energy_drift(trajectory, 0.2)  # 0.3 / |1.0| > 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulation.check_energy_drift(trajectory, 0.31)
        simulation.check_energy_drift(trajectory, None)


def test_float32_loss_below_resolution_warns():
    """float32 rounds the kinetic energy to eps = 1.2e-7 relative: a loss of 1e-6 of it is within 100
    roundings and must warn; the same loss in float64 (eps 2.2e-16) is resolved."""
    with pytest.warns(simulation.PrecisionWarning, match="float32"):
        simulation.check_precision(jnp.array([1e-6, 1e-2]), jnp.array([1.0, 1.0]), jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulation.check_precision(jnp.array([1e-6, 1e-2]), jnp.array([1.0, 1.0]), jnp.float64)


# --- fitting ----------------------------------------------------------------------------------------

def test_fit_stays_positive_and_warns_when_not_converged():
    """A model whose unconstrained optimum is negative (p = -1): the positive (log) fit can only approach
    zero from above, never reaches the target, and must warn; a negative start is refused."""
    target = jnp.array([-1.0, -1.0])
    model = lambda p: jnp.stack([p, p])
    with pytest.warns(fitting.FitWarning, match="did not converge"):
        result = jx.fit(lambda p: p, model, target, 0.5, residual="absolute", max_steps=20, gtol=0.0, ftol=0.0)
    assert not bool(result.converged)
    assert 0.0 < float(result.params) < 0.5  # moved towards the target, stayed positive
    with pytest.raises(ValueError, match="positive"):
        jx.fit(lambda p: p, model, target, -0.5, residual="absolute")


# --- materials table ----------------------------------------------------------------------------------

HEADER = ",".join(materials.COLUMNS)


def table(tmp_path, *rows, header=HEADER):
    path = tmp_path / "table.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


ROW = "X{n},MgO,oxide,measured,cubic,{density},297.8,97.0,156.3,,,,ref,note"


@pytest.mark.parametrize(
    "rows, header, fragment",
    [
        ((ROW.format(n=1, density="3.5"), ROW.format(n=2, density="3.x")), HEADER,
         "table.csv, line 3, column density_g_cm3"),
        ((ROW.format(n=1, density="3.5"), ROW.format(n=1, density="3.6")), HEADER, "duplicate material name 'X1'"),
        ((ROW.format(n=1, density="3.5") + ",extra",), HEADER + ",colour", "unknown columns ['colour']"),
        ((ROW.format(n=1, density="-3.5"),), HEADER, "table.csv, line 2 (X1): density"),
    ],
)
def test_materials_table_errors_name_file_row_and_column(tmp_path, rows, header, fragment):
    with pytest.raises(ValueError) as caught:
        materials.load_materials(table(tmp_path, *rows, header=header))
    assert fragment in str(caught.value)


def test_materials_valid_table_and_unknown_name(tmp_path):
    loaded = materials.load_materials(table(tmp_path, ROW.format(n=1, density="3.584")))
    packaged = materials.load_materials()["MgO"]  # the same numbers in the packaged table
    np.testing.assert_allclose(loaded["X1"].voigt, packaged.voigt, rtol=1e-14)
    with pytest.raises(KeyError, match="the table has .*MgO"):
        materials.load_materials()["MgX"]


# --- command line: interrupted figure runs ------------------------------------------------------------

def strict_json(path):
    """Parse ``path`` refusing the NaN / Infinity extensions."""
    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_figure_size_checked_before_any_work(tmp_path):
    from jaxion import cli

    began = time.perf_counter()
    code = cli.main(["figure", "4", "--quick", "--size", "3", "--out", str(tmp_path)])
    assert code == 2
    assert not list(tmp_path.iterdir())  # nothing was computed or written
    assert time.perf_counter() - began < 30.0


def started(process, marker, deadline):
    """Read ``process``'s stderr until ``marker`` appears (the run is under way); returns what was read."""
    seen = b""
    while marker not in seen and process.poll() is None and time.time() < deadline:
        seen += os.read(process.stderr.fileno(), 4096)
    return seen


def test_interrupted_figure_keeps_earlier_result_and_saves_strict_partial(tmp_path):
    """An earlier complete fig2.json in the folder; a re-run stopped by SIGINT and one by SIGTERM (in
    parallel, into two copies of the folder) once the run is under way (its progress bar is shown): each
    exits 130 / 143 with one line, the complete file is byte-identical, and the partial file is strict
    JSON marked interrupted. The full figure (minutes), not --quick (seconds, which under load could end
    before the signal arrives): the signal always lands mid-run."""
    earlier = json.dumps({"figure": "fig2", "curves": [{"simulation": [1.0, None]}], "finished": "earlier"})
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / sig.name
        out.mkdir()
        (out / "fig2.json").write_text(earlier)
        command = [sys.executable, "-m", "jaxion.cli", "figure", "2", "--out", str(out)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        runs[sig] = (out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    deadline = time.time() + 240
    for sig, (out, process) in runs.items():
        started(process, b"fig2:", deadline)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(sig)
    for sig, (out, process) in runs.items():
        _, err = process.communicate(timeout=120)
        err = err.decode()
        assert process.returncode == 128 + int(sig), err
        assert "Traceback" not in err and f"stopped by {sig.name}" in err
        assert (out / "fig2.json").read_text() == earlier
        partial = strict_json(out / "fig2.partial.json")
        assert partial["figure"] == "fig2" and "interrupted" in partial and "finished" not in partial
        assert partial["parameters"]["size"] == 100  # the paper's chain
