"""Shared helpers for the benchmark scripts: machine description, timing, JSON output."""

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import time

import jax


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


def time_call(fn, repeats=3):
    """Run ``fn()`` once to warm up (compile), then ``repeats`` times.

    Returns:
        dict of ``min``, ``median``, ``max`` wall seconds over the repeats and ``warmup`` seconds.
    """
    start = time.perf_counter()
    _block(fn())
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "warmup": warmup}


def compile_time(fn, *args, **kwargs):
    """Seconds to trace, lower and compile ``jax.jit(fn)`` for these arguments; returns
    ``(seconds, compiled)`` where ``compiled(*args, **kwargs)`` runs without recompiling."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args, **kwargs).compile()
    return time.perf_counter() - start, compiled


def write_json(name, payload, out_dir="benchmarks/results"):
    """Write ``payload`` (plus ``machine_info()`` under ``"machine"``) to ``out_dir/name.json``;
    returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine_info(), **payload}, f, indent=2, default=float)
    return path
