"""Shared helpers for the benchmark scripts: machine description, timing, JSON output."""

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp


def _cpu_model():
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    """Where and with what a benchmark ran: CPU, cores, library versions, JAX backend, date."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **{name: _version(name) for name in ("jax", "jaxlib", "equinox", "diffrax")},
        "backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _block(value):
    return jax.block_until_ready(value)


def time_call(fn, repeats=3, clock=time.perf_counter):
    """Run ``fn()`` once to warm up (compile), then ``repeats`` times.

    Args:
        clock: ``time.perf_counter`` (wall seconds), or ``time.process_time`` (this process's CPU
            seconds, all threads: other processes sharing the cores inflate it less).

    Returns:
        dict of ``min``, ``median``, ``max`` seconds over the repeats and ``warmup`` seconds.
    """
    start = clock()
    _block(fn())
    warmup = clock() - start
    times = []
    for _ in range(repeats):
        start = clock()
        _block(fn())
        times.append(clock() - start)
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "warmup": warmup}


def compile_time(fn, *args, **kwargs):
    """Seconds to trace, lower and compile ``jax.jit(fn)`` for these arguments; returns
    ``(seconds, compiled)`` where ``compiled(*args, **kwargs)`` runs without recompiling."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args, **kwargs).compile()
    return time.perf_counter() - start, compiled


def bare_steps(terms, solver, dt, steps, dtype=None):
    """``y0 -> y``: ``steps`` fixed steps of the diffrax ``solver`` (``init``, then ``step`` from
    ``t = i dt`` to ``(i + 1) dt``) on ``terms`` in a bare, jitted ``lax.scan``: no diffrax loop, no step
    control, no saving. The baseline against which ``diffrax.diffeqsolve``'s overhead is measured."""
    dt = jnp.asarray(dt, dtype)

    @jax.jit
    def run(y0):
        state = solver.init(terms, 0.0, dt, y0, None)

        def body(carry, i):
            y, state = carry
            t = i * dt
            y, _, _, state, _ = solver.step(terms, t, t + dt, y, None, state, jnp.array(False))
            return (y, state), None

        return jax.lax.scan(body, (y0, state), jnp.arange(steps, dtype=dt.dtype))[0][0]

    return run


RESULTS_ENV = "JAXION_BENCH_RESULTS"  # set by run_all.py: where its scripts write
DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "out" / "benchmarks" / "results"  # git-ignored


def results_dir():
    """Where a benchmark writes its JSON: ``$JAXION_BENCH_RESULTS`` (``run_all.py`` sets it: ``out/`` by
    default, the committed ``benchmarks/results/`` with ``--write-docs``), else ``out/benchmarks/results/``
    of this checkout (git-ignored), so a script run alone never rewrites a tracked file."""
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def write_json(name, payload, out_dir=None, root=None):
    """Write ``payload`` (plus ``machine_info()`` under ``"machine"``) to ``out_dir/name.json``: by default
    :func:`results_dir`, or ``root/benchmarks/results/`` for a script's ``--out root`` (``--out .``: the
    committed results); returns the path."""
    if out_dir is None:
        out_dir = results_dir() if root is None else os.path.join(root, "benchmarks", "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine_info(), **payload}, f, indent=2, default=float)
    return path
