"""What a new user meets in the first hour (issue 15): the finite-box warning fires only where the
returning sound changes a result beyond its stated tolerance, ``jaxion --help`` starts without jax,
the demo figure marks what its agreement statistic leaves out and has units, and the README's
``jaxion loss`` example is the command's real output.

The finite-box estimate is checked against full-lattice single passes in two boxes: its second-order
mode sums (``jaxion.dissipation.loss_perturbative`` with ``size=L`` against the zone integral) are an
independent route from the integrated trajectories.
"""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import jaxion as jx
from jaxion import cli, experiments, plotting
from jaxion.finite_box import check_sound_return, finite_box_change
from jaxion.response import max_sound_speed
from jaxion.run_checks import BOX_TOL
from jaxion.simulation import FiniteBoxWarning, pass_geometry

ROOT = Path(__file__).resolve().parents[1]


def box_warnings(run):
    """The FiniteBoxWarning messages ``run()`` emits (every one, not deduplicated)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if issubclass(w.category, FiniteBoxWarning)]


def test_box_warning_follows_the_returning_sound_measured_in_two_boxes():
    # An ungapped chain (kappa = 0), lambda = 1, Phi0 = 1e-3: the ion slows by < 0.3% at v >= 4, so the
    # passes are perturbative. In a 32-mass box the estimate says the returning sound changes the loss
    # by -22% at v = 4, -0.32% at 6 and -8e-6 at 8; in a 96-mass box by < 1e-13 (echo-free).
    # Measured: the simulated L = 32 / L = 96 ratios differ from the estimate by 0.7-0.8% of it at all
    # three speeds (three decades of the effect); the 3% tolerance leaves room for the higher orders
    # in Phi0 / kinetic energy (0.5% at v = 4) that the second-order estimate leaves out.
    system = jx.System(jx.Chain(kappa_par=0.0, kappa_perp=0.0), jx.Gaussian(0.001, 1.0), [(0,)])
    speeds = np.array([4.0, 6.0, 8.0])
    estimate = {size: finite_box_change(system, speeds, (0.0, 0.0), size)[0] for size in (32, 96)}
    losses, messages = {}, {}
    for size in (32, 96):
        def run(size=size):
            losses[size] = np.asarray(jx.single_pass(system, speeds, size=size, solver="symplectic", dt=0.01).loss)
        messages[size] = box_warnings(run)
    actual = losses[32] / losses[96] - 1.0
    predicted = (1.0 + estimate[32]) / (1.0 + estimate[96]) - 1.0
    np.testing.assert_allclose(actual, predicted, rtol=0.03)
    # The warning: once for the call, at the speeds beyond BOX_TOL (v = 4, 6; not 8), saying by how much.
    assert np.abs(actual[:2]).min() > BOX_TOL > np.abs(actual[2])
    assert len(messages[32]) == 1 and messages[96] == []
    message = messages[32][0]
    assert "at 2 of 3 speeds (v = 4, 6)" in message and f"box_tol={BOX_TOL:g}" in message
    stated = float(re.search(r"changes the single-pass loss by ([-+0-9.]+)%", message).group(1)) / 100
    assert abs(stated / actual[0] - 1.0) < 0.03  # at v = 4, the larger of its values at v and v_min


def test_box_tolerance_is_configurable():
    # Same chain, same 32-mass box, estimated without running (straight-path durations): a tolerance of
    # 1% keeps only v = 4 (-22%), None silences the check; v = 8 is below any sensible tolerance.
    system = jx.System(jx.Chain(kappa_par=0.0, kappa_perp=0.0), jx.Gaussian(0.001, 1.0), [(0,)])
    speeds = np.array([4.0, 6.0, 8.0])
    assert "at 2 of 3 speeds (v = 4, 6)" in box_warnings(lambda: check_sound_return(system, speeds, size=32))[0]
    strict = box_warnings(lambda: check_sound_return(system, speeds, size=32, box_tol=0.01))
    assert len(strict) == 1 and "at 1 of 3 speeds (v = 4)" in strict[0] and "box_tol=0.01" in strict[0]
    assert box_warnings(lambda: check_sound_return(system, speeds, size=32, box_tol=None)) == []
    with pytest.raises(ValueError, match="box_tol"):
        check_sound_return(system, speeds, size=32, box_tol=-1.0)


def test_readme_quick_start_pass_is_silent_although_sound_crosses_its_box():
    # The README's and the quickstart notebook's pass (v = 20 through a 12^3 box): sound does go round
    # the box within the pass (the old warning's criterion), but changes the loss by ~1e-5 only.
    system = jx.System(jx.SimpleCubic(k1=15.0, k2=5.0, spacing=2.0), jx.Gaussian(phi0=0.01, width=1.0),
                       sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
    position, stop_z = pass_geometry(system, (0.0, 0.0))
    crossing = float(stop_z - position[2]) / 20.0
    assert crossing * max_sound_speed(system.lattice) > 12 * 2.0
    assert abs(float(finite_box_change(system, [20.0], (0.0, 0.0), 12)[0][0])) < 0.1 * BOX_TOL
    assert box_warnings(lambda: check_sound_return(system, 20.0, size=12)) == []


def test_help_starts_without_jax():
    # `jaxion --help` (and a subcommand's) must not import jax: it took 1.5 s on the 2-core machine, 0.05 s
    # without. The package still switches jax to float64 when a public name is first used.
    code = (
        "import sys, jaxion.cli as cli\n"
        "for argv in (['--help'], ['loss', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'jax' not in sys.modules, 'jax imported by --help'\n"
        "import jaxion\n"
        "print(jaxion.Gaussian(0.01, 1.0).width.dtype)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "float64"
    assert "usage: jaxion" in result.stdout


def readme_loss_example():
    """The README's ``jaxion loss`` console block: the command's arguments and its printed lines."""
    block = re.search(r"```console\n\$ jaxion (loss .*?)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return block.group(1).split(), block.group(2).splitlines()


def test_readme_loss_example_is_the_real_output_with_units(capsys, tmp_path):
    argv, printed = readme_loss_example()
    assert ".." not in argv
    assert cli.main(argv + ["--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.replace(str(tmp_path), "out").splitlines()
    assert lines == printed
    assert "(l/period)" in lines[0] and "(hbar Omega)" in lines[0]
    saved = experiments.read_json(tmp_path / "loss_cubic_perturbative.json")
    assert saved["units"] == {key: cli.LOSS_UNITS[key] for key in ("speed", "loss", "note")}


def test_readme_names_the_fast_test_subset():
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pytest -m "not notebook"' in readme and "&& python -m pytest " in readme
    assert "notebook:" in (ROOT / "pyproject.toml").read_text()  # the marker the subset deselects


def chain_curve(width, speed, simulation, eq13, box, barrier):
    """A demo curve as ``experiments.fig2`` records it, with hand-made numbers (a gapped chain's
    ``exp(-1 / v^2)``-like loss, Eq. 14 equal to Eq. 13)."""
    line_speed = np.geomspace(speed[0], speed[-1], 40)
    return dict(kappa=1.0, width=width, s=0.0, speed=speed, simulation=simulation, eq13=eq13, eq14=eq13,
                line_speed=line_speed, eq13_line=eq13_at(line_speed), eq14_line=eq13_at(line_speed),
                validity=dict(barrier=barrier, sound_speed=31.3, box=box, width=width))


def eq13_at(speed):
    return 1e-5 * np.exp(-(40.0 / np.asarray(speed)) ** 2)  # 1e-5 e^-400 ~ 1e-179 at v = 2


def test_demo_figure_marks_left_out_points_and_limits_its_y_axis():
    # experiments.agreement's criteria worked out by hand (KE = v^2 / 8 pi^2; box criterion
    # box > 31.3 x 8 widths x lambda / v = 1002 / v; slope of ln Delta = 2 (40 / v)^2):
    #  v = 2:  predicted 1e-5 e^-400 < 1e-10 KE = 5e-12 (unresolved), slope 800 x barrier 1e-4 / 2 KE
    #          = 0.79 > 1% (slowdown), box 40 < 501 (returning sound): all three marks;
    #  v = 20: box 40 < 50 (returning sound) only; v = 60: kept (40 > 16.7; shift 9e-7).
    speed = np.array([2.0, 20.0, 60.0])
    eq13 = eq13_at(speed)
    simulation = np.array([3e-13, eq13[1] * 1.001, eq13[2] * 1.002])
    curve = chain_curve(4.0, speed, simulation, eq13, box=40.0, barrier=1e-4)
    data = {"parameters": {"mu": 1.0}, "curves": [curve]}
    excluded = experiments.exclusions(data, "eq13")
    result = experiments.agreement(data, "eq13")
    assert {k: excluded[0][k].tolist() for k in ("slowdown", "box", "unresolved")} == {
        "slowdown": [True, False, False], "box": [True, True, False], "unresolved": [True, False, False]}
    assert result["points"] == 1 and result["max_relative_deviation"] == pytest.approx(0.002, rel=1e-9)
    low_speed = {"curves": [dict(width=1.0, s=0.0, speed=np.array([0.5, 1.0]), eq13=np.array([1.0, 2.0]),
                                 eq23=np.array([1.0, 2.0]))]}
    matplotlib.use("Agg")
    fig = plotting.demo(data, low_speed, excluded=excluded, reasons=result["reasons"])
    chain = fig.axes[0]
    marks = {line.get_marker(): line.get_xdata().tolist() for line in chain.lines if line.get_marker() in ("+", "x", "_")}
    assert marks == {"+": [2.0], "x": [2.0, 20.0], "_": [2.0]}
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == [result["reasons"][k] for k in ("slowdown", "box", "unresolved")]
    assert "box" in legend[1] and "1e-10 of the kinetic energy" in legend[2]
    # y axis: from half the lowest simulated point (3e-13, above 1e-3 of the floor) to twice the highest
    # value, not down to the theory line's 1e-179
    bottom, top = chain.get_ylim()
    assert bottom == pytest.approx(1.5e-13) and top == pytest.approx(2 * max(simulation.max(), curve["eq13_line"].max()))
    assert "per period" in chain.get_xlabel() and "per period" in fig.axes[-1].get_xlabel()
    plotting.plt.close(fig)
