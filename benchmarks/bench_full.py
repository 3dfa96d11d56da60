"""Whole-lattice method (jaxion.full): cost per force evaluation and per step, against the
machine's memory bandwidth.

    python benchmarks/bench_full.py [--quick]

Writes full.json (``full_quick.json`` with ``--quick``) into ``_common.results_dir()``:
``out/benchmarks/results/``, git-ignored.

For L in (32, 64, 100) (``--quick``: 8, 12), float64 and float32, and each solver:

* seconds per force evaluation (the layout-aware component-major stencil, and for comparison a
  literal (L, L, L, 3) roll-and-einsum stencil);
* seconds per step through ``diffrax.diffeqsolve`` (fixed step, no saving) and through a bare
  ``lax.scan`` of the same solver step: the difference is diffrax's overhead;
* the memory bandwidth of a STREAM triad ``a = b + s c`` inside a jitted ``fori_loop`` in the
  same process (standalone calls on large arrays are distorted by page faults), and the ratio of
  the achieved step time to the bound ``bytes that must move per step / bandwidth``;
* peak resident memory (``ru_maxrss``) and a projection of the paper's Fig. 6 run (L = 100,
  tau = 30) with the recommended solver (Blanes-Moan order 4 at dt = 0.02).

Solvers: ``tsit5`` is jaxion's (the tableau in Nystroem form, ``jaxion.solvers.RungeKuttaNystrom``);
``tsit5_generic`` is diffrax's ``Tsit5`` on the first-order field ``(p, a(q))`` of the same model,
the generic stage loop, for comparison (same numbers to rounding).

Bytes per step (state ``N = 3 L^3`` numbers per array, ``b`` bytes each): a symplectic stage must
at least read ``q`` and ``p`` and write them back (``4 N b``); a generic Tsit5 step (fixed step,
first same as last) must at stage ``i = 1..6`` read ``y0`` (``q`` and ``p``) and ``i`` earlier
stage derivatives and write one, then combine seven derivatives: ``41 x 2 N b``. Both Tsit5
rows are measured against that bound (the Nystroem form's own minimum is lower, ``59 N b``:
stage ``i`` reads ``q0``, ``p0`` and ``i - 1`` accelerations and writes ``Q_i``, the force
reads ``Q_i`` and writes ``A_i``, and the end reads ``q0``, ``p0`` and six accelerations).
"""

import argparse
import resource
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bare_steps, time_call, write_json  # noqa: E402

import jaxion  # noqa: E402,F401
from jaxion import full  # noqa: E402
from jaxion.experiments import fig6_setup  # noqa: E402

SOLVER_DT = {"tsit5": 1e-3, "tsit5_generic": 1e-3, "verlet": 5e-3, "symplectic": 2e-2}
STATE_TRANSFERS = {"tsit5": 41 * 2, "tsit5_generic": 41 * 2, "verlet": 4, "symplectic": 6 * 4}  # N b, docstring


def triad_bandwidth(n, iterations):
    """Bytes per second of ``a = b + s c`` (3 arrays of ``n`` float64 per iteration)."""
    b = jnp.arange(n, dtype=jnp.float64)
    c = jnp.ones(n, dtype=jnp.float64)

    @jax.jit
    def run(b, c):
        return jax.lax.fori_loop(0, iterations, lambda i, a: a * 1e-3 + b + 0.5 * c, jnp.zeros_like(b))

    timing = time_call(lambda: jax.block_until_ready(run(b, c)), 3)
    # the loop carry a is read and written, b and c read: 4 arrays per iteration
    return 4 * n * 8 * iterations / timing["median"], timing


def naive_force(model):
    """The literal stencil on an (L, L, L, 3) array: roll the whole array, einsum with Phi_b."""
    lattice = model.system.lattice
    tensors = lattice.bond_tensors()

    def force(rho):  # rho (L, L, L, 3)
        total = -rho * lattice.confinement
        for offset, tensor in zip(lattice.offsets, tensors):
            shift = tuple(-c for c in offset)
            lap = 2 * rho - jnp.roll(rho, shift, (0, 1, 2)) - jnp.roll(rho, offset, (0, 1, 2))
            total = total - jnp.einsum("...j,ij->...i", lap, tensor.astype(rho.dtype))
        return total

    return jax.jit(force)


def solver_parts(model, solver):
    """``(terms, method)``: jaxion's solver on the partitioned terms, or (``tsit5_generic``)
    diffrax's Tsit5 on the first-order field."""
    if solver == "tsit5_generic":
        drift, kick = model.terms()
        return diffrax.ODETerm(lambda t, y, args: (drift.vf(t, y[1], args), kick.vf(t, y[0], args))), diffrax.Tsit5()
    return model.terms(), full.make_solver(solver)


def bare_scan(model, solver, dt, steps):
    """``steps`` solver steps in a bare ``lax.scan`` (no diffrax loop, no saving; ``_common.bare_steps``)."""
    return bare_steps(*solver_parts(model, solver), dt, steps, model.dtype)


def through_diffrax(model, solver, dt, steps):
    """``steps`` fixed steps through ``diffrax.diffeqsolve``, saving only the end."""
    terms, method = solver_parts(model, solver)
    t1, dt = jnp.asarray(steps * dt, model.dtype), jnp.asarray(dt, model.dtype)

    @jax.jit
    def run(y0):
        return diffrax.diffeqsolve(
            terms, method, jnp.zeros((), model.dtype), t1, dt, y0, saveat=diffrax.SaveAt(t1=True), max_steps=steps + 1
        ).ys

    return run


def measure(size, dtype, bandwidth, steps, repeats):
    setup = fig6_setup()
    model = full.FullLattice(setup.system, size, dtype)
    y0 = model.initial_state(setup.position, setup.velocity)
    # a lattice already in motion, so no arithmetic is on zeros
    rho = 0.01 * jax.random.normal(jax.random.PRNGKey(0), model.shape, dtype)
    y0 = ((model.wrap(rho), y0[0][1]), (tuple(rho), y0[1][1]))
    itemsize = jnp.dtype(dtype).itemsize
    numbers = 3 * size**3
    force = eqx.filter_jit(model.acceleration)
    naive = naive_force(model)
    rho_last = jnp.moveaxis(rho, 0, -1)
    row = dict(
        size=size,
        dtype=jnp.dtype(dtype).name,
        force=time_call(lambda: jax.block_until_ready(force(y0[0])), repeats),
        force_naive_layout=time_call(lambda: jax.block_until_ready(naive(rho_last)), repeats),
    )
    row["force_bound_ratio"] = row["force"]["median"] / (2 * numbers * itemsize / bandwidth)
    row["naive_layout_slowdown_ratio"] = row["force_naive_layout"]["median"] / row["force"]["median"]
    for solver, dt in SOLVER_DT.items():
        scan, solve = bare_scan(model, solver, dt, steps), through_diffrax(model, solver, dt, steps)
        scan_time = time_call(lambda: jax.block_until_ready(scan(y0)), repeats)
        solve_time = time_call(lambda: jax.block_until_ready(solve(y0)), repeats)
        per_step = {k: solve_time[k] / steps for k in ("min", "median", "max")}
        per_step_scan = {k: scan_time[k] / steps for k in ("min", "median", "max")}
        bound = STATE_TRANSFERS[solver] * numbers * itemsize / bandwidth
        row[solver] = dict(
            dt=dt,
            step=per_step,
            step_bare_scan=per_step_scan,
            diffrax_overhead_ratio=per_step["median"] / per_step_scan["median"],
            step_bound_ratio=per_step["median"] / bound,
            seconds_per_period=per_step["median"] / dt,
        )
    row["nystrom_speedup"] = row["tsit5_generic"]["step"]["median"] / row["tsit5"]["step"]["median"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args(argv)
    sizes, steps, repeats = ((8, 12), 5, 2) if args.quick else ((32, 64, 100), 20, 3)
    bandwidth, triad = triad_bandwidth(1 << (20 if args.quick else 25), 5 if args.quick else 20)
    rows = [measure(size, dtype, bandwidth, steps, repeats) for size in sizes for dtype in (jnp.float64, jnp.float32)]
    largest = [r for r in rows if r["size"] == max(sizes) and r["dtype"] == "float64"][0]
    # cost per site per period scales as L^3 at fixed bandwidth
    per_period = largest["symplectic"]["seconds_per_period"] * (100 / max(sizes)) ** 3
    payload = dict(
        parameters=dict(sizes=sizes, steps=steps, repeats=repeats, quick=args.quick, dt=SOLVER_DT,
                        state_transfers_per_step=STATE_TRANSFERS),
        bandwidth_bytes_per_second=bandwidth,
        triad=triad,
        results=rows,
        fig6_projection=dict(
            solver="symplectic", dt=SOLVER_DT["symplectic"], periods=30.0,
            seconds={"median": per_period * 30.0, "unit": "s"},
            extrapolated_from_size=max(sizes),
        ),
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    write_json("full_quick" if args.quick else "full", payload)
    for r in rows:
        print(
            f"L={r['size']:4d} {r['dtype']:8s} force {r['force']['median'] * 1e3:8.3f} ms "
            f"(x{r['force_bound_ratio']:.1f} bound, naive layout x{r['naive_layout_slowdown_ratio']:.1f})  "
            + "  ".join(
                f"{s}: {r[s]['step']['median'] * 1e3:.3f} ms/step x{r[s]['step_bound_ratio']:.1f} bound "
                f"diffrax/scan {r[s]['diffrax_overhead_ratio']:.2f}"
                for s in SOLVER_DT
            )
        )
    print(f"bandwidth {bandwidth / 1e9:.2f} GB/s; Fig. 6 projection {per_period * 30:.0f} s; "
          f"peak RSS {payload['peak_rss_bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
