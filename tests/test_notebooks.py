"""Every notebook (jupytext percent script under ``notebooks/``) runs in its ``--quick`` setting, and
the README's quick start runs as printed: this is how CI keeps the documentation from rotting.

Each runs in a fresh interpreter, as a user would run it, with ``--out`` a temporary folder: it
must write its figures/JSON there and leave the checkout as it found it (``git status``: no tracked
file changed, nothing new under ``notebooks/``), so the tests never touch the committed results in
``notebooks/results/``. Marked ``notebook`` so that ``pytest -m "not notebook"`` skips them; they
run by default.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
TIMEOUT = 600  # seconds; each --quick run takes ~10-30 s on an idle 2-core machine


SOURCES = (".py", ".md", ".toml", ".cfg", ".txt", ".yml", ".yaml")  # edited by hand, never written by a run


def checkout_status():
    """The checkout's state as lines of ``git status --porcelain``: the changed tracked files, and the
    untracked (not ignored) files under ``notebooks/``; ``None`` outside a git checkout (or without git).
    Changed source and prose files (``SOURCES``) outside ``notebooks/`` are left out: runs write data
    (JSON, figures, arrays), and other work on the checkout may edit sources while a notebook runs."""
    def status(*options):
        return subprocess.run(["git", "status", "--porcelain", *options], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)

    try:
        tracked, notebooks = status("--untracked-files=no"), status("--untracked-files=all", "--", "notebooks")
    except (OSError, subprocess.SubprocessError):
        return None
    if tracked.returncode != 0 or notebooks.returncode != 0:
        return None
    data = {line for line in tracked.stdout.splitlines() if "notebooks/" in line or not line.endswith(SOURCES)}
    return data | set(notebooks.stdout.splitlines())


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_quick(notebook, tmp_path):
    before = checkout_status()
    result = subprocess.run([sys.executable, str(notebook), "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written, f"{notebook.name} wrote nothing under --out {tmp_path}"
    if before is not None:  # lines that appeared: a tracked file changed, or a new file under notebooks/
        assert not checkout_status() - before, f"{notebook.name} changed the checkout: {checkout_status() - before}"


def test_notebooks_are_percent_scripts():
    for notebook in NOTEBOOKS:
        assert "# %%" in notebook.read_text(), f"{notebook.name} has no jupytext '# %%' cells"


@pytest.mark.notebook
def test_readme_quick_start_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 20
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.filterwarnings("ignore::jaxion.simulation.FiniteBoxWarning")
def test_quick_fig4_kernel_method_matches_full_lattice(tmp_path):
    """The kernel method integrates the same periodic L^3 lattice out exactly, so its single-pass losses
    must equal the full lattice's up to the two integrators' errors. Tolerance 1e-5 relative: the full
    lattice's dt="auto" symplectic step was measured at <= 2e-6 relative against Tsit5 (pass_step), the
    kernel's auto step at <= 1e-6 against halved steps; a method error (wrong kernel, box or sites) or a
    step too coarse for the force pulse (dt = range / 3 v errs by 1e-3) is far above it. Also checks the
    notebook driver's folders (kernel results beside, never over, the full ones) and the pairing."""
    from jaxion import experiments

    runs = {method: experiments.cubic_figure_from_command_line("fig4", tmp_path, ["--quick", "--method", method])
            for method in ("full", "kernel")}
    assert runs["full"][1] == tmp_path / "quick" and runs["kernel"][1] == tmp_path / "quick" / "kernel"
    assert runs["full"][2] == runs["kernel"][2] == tmp_path  # the --out folder (default: the argument)
    full, kernel = (runs[method][0] for method in ("full", "kernel"))
    assert kernel["parameters"]["method"] == "kernel" and full["parameters"]["method"] == "full"
    losses = [np.asarray(data["curves"][0]["simulation"]) for data in (full, kernel)]
    assert np.all(np.isfinite(losses[0])) and np.all(losses[0] > 0)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5, atol=0)
    paired = experiments.full_and_kernel("fig4", kernel, tmp_path)
    assert paired[0]["parameters"]["method"] == "full" and paired[1] is kernel
    written = experiments.write_agreement(kernel, (), runs["kernel"][1], paired)
    assert written["full"]["points"] == len(losses[0]) and written["full"]["max_relative_deviation"] < 1e-5


def test_cubic_figures_refuse_unknown_method():
    from jaxion import experiments

    for run in (experiments.fig4, experiments.fig5):
        with pytest.raises(ValueError, match="method must be one of"):
            run(method="local", simulate=False, progress=False)
