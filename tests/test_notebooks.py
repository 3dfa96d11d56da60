"""Every notebook (jupytext percent script under ``notebooks/``) runs in its ``--quick`` setting, and
the README's quick start runs as printed: this is how CI keeps the documentation from rotting.

Each runs in a fresh interpreter, as a user would run it, and must write its figures/JSON under
``notebooks/results/`` (quick settings into their own folders, so the committed full-size
results are never overwritten by the tests). Marked ``notebook`` so that
``pytest -m "not notebook"`` skips them; they run by default.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
TIMEOUT = 600  # seconds; each --quick run takes ~10-30 s on an idle 2-core machine


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_quick(notebook):
    began = time.time()
    result = subprocess.run([sys.executable, str(notebook), "--quick"], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    results = ROOT / "notebooks" / "results"
    written = [path for path in results.rglob("*") if path.is_file() and path.stat().st_mtime >= began - 1]
    assert written, f"{notebook.name} wrote nothing under {results}"


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
