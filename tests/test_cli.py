"""The ``jaxion`` command: argument errors, the loss table against an independent formula, demo files.

Bad arguments must end with exit code 2 and a one-line message, never a traceback; the numbers
``jaxion loss`` prints and saves are checked against Eq. 14 written out here with SciPy's Bessel
functions (an implementation independent of ``jaxion.dissipation``).
"""

import csv
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.special import i0e, i1e

from jaxion import cli


def run_cli(argv, capsys):
    """``main(argv)`` in-process; argparse's ``SystemExit`` is turned into its exit code."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required"),
        (["figure", "3"], "invalid choice"),
        (["figure", "2", "--size", "-4"], "positive int"),
        (["loss", "--lattice", "hexagonal"], "invalid choice"),
        (["loss", "--speeds", "1,x"], "comma-separated"),
        (["loss", "--speeds", "1,-2"], "positive"),
        (["loss", "--speeds", "1", "--speed-range", "1", "2", "3"], "not allowed with"),
        (["loss", "--method", "closed-form", "--speeds", "1"], "closed-form"),
        (["loss", "--lattice", "chain", "--method", "low-speed", "--speeds", "1"], "3D"),
        (["loss", "--speed-range", "5", "1", "3"], "speed-range"),
        (["loss", "--phi0", "nan", "--speeds", "1"], "finite"),
    ],
)
def test_bad_arguments_exit_2_with_message(argv, fragment, capsys, tmp_path):
    code, _, err = run_cli(argv + (["--out", str(tmp_path)] if argv[:1] == ["loss"] else []), capsys)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


def test_console_script_reports_errors_without_traceback():
    """The installed entry point (or ``python -m jaxion.cli``) in a fresh process."""
    command = [shutil.which("jaxion")] if shutil.which("jaxion") else [sys.executable, "-m", "jaxion.cli"]
    result = subprocess.run(command + ["loss", "--speeds", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "positive" in result.stderr


def eq14_scipy(k, kappa, phi0, width, s, v):
    """Eq. 14 (physics.md section 3) for an isotropic chain, mass 1, with SciPy's scaled Bessel functions."""
    y2 = (2 * np.pi * width / v) ** 2
    common = np.pi * phi0**2 * np.exp(-(s**2) / width**2) * np.exp(-y2 * kappa)
    perp = common * y2 * s**2 / width**4 * i0e(2 * k * y2)
    par = common * y2**2 / width**2 * ((kappa + 2 * k) * i0e(2 * k * y2) - 2 * k * i1e(2 * k * y2))
    return perp + par


@pytest.mark.parametrize("method, rtol", [("closed-form", 1e-10), ("perturbative", 1e-3)])
def test_loss_table_matches_independent_closed_form(method, rtol, capsys, tmp_path):
    # closed-form: the same formula coded twice, so agreement to rounding (1e-10);
    # perturbative: the Eq. 13 Brillouin-zone quadrature, specified to 1e-3 relative (issue 2).
    speeds = [2.0, 5.0, 20.0, 80.0]
    argv = ["loss", "--lattice", "chain", "--k1", "24.75", "--k2", "24.75", "--kappa", "1", "--phi0", "0.01",
            "--width", "1", "--s", "1", "--speeds", ",".join(map(str, speeds)), "--method", method,
            "--out", str(tmp_path)]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    expected = eq14_scipy(24.75, 1.0, 0.01, 1.0, 1.0, np.array(speeds))
    with open(tmp_path / f"loss_chain_{method}.csv") as handle:
        rows = list(csv.DictReader(handle))
    np.testing.assert_allclose([float(r["speed"]) for r in rows], speeds, rtol=1e-15)
    np.testing.assert_allclose([float(r["loss"]) for r in rows], expected, rtol=rtol)
    saved = json.loads((tmp_path / f"loss_chain_{method}.json").read_text())
    np.testing.assert_allclose(saved["loss"], expected, rtol=rtol)
    printed = [float(line.split()[1]) for line in out.splitlines()[1 : 1 + len(speeds)]]
    np.testing.assert_allclose(printed, expected, rtol=max(rtol, 1e-6))  # table shows 7 significant digits


def test_demo_quick_writes_figure_and_numbers(capsys, tmp_path):
    from jaxion.simulation import FiniteBoxWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, _ = run_cli(["demo", "--quick", "--out", str(tmp_path)], capsys)
    assert code == 0
    # The 64-mass chain's passes at v = 5-40: sound does go round the box within the runs (2 warnings
    # before the estimate), but changes the losses by < 1e-9 (jaxion.finite_box.finite_box_change: 5e-10 at most).
    assert not [w for w in caught if issubclass(w.category, FiniteBoxWarning)]
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    payload = json.loads((tmp_path / "demo.json").read_text())
    assert {"chain", "low_speed", "agreement", "machine"} <= set(payload)
    # Full chain simulations at Phi0 = 0.01 with kinetic energy > 10 Phi0 against the second-order
    # formulas: the neglected higher orders are of relative size ~ Phi0 / kinetic energy <= 0.1 at the
    # slowest points compared, in practice ~1e-2; a 5% bound catches any wrong factor or sign.
    for theory in ("eq13", "eq14"):
        assert payload["agreement"][theory]["points"] >= 3
        assert payload["agreement"][theory]["max_relative_deviation"] < 0.05
    # Eq. 13 -> Eq. 23 as v -> 0 (3D drag): relative difference ~ v^2, below 1e-3 at v = 0.25.
    assert abs(payload["low_speed_ratio_at_slowest"] - 1.0) < 1e-3
    assert "max relative deviation" in out
