"""Beyond one device: time per step against the number of devices, for an ensemble laid over the
devices (jaxion.sharding.sharded_map) and for one lattice split into slabs (jaxion.slab).

    python benchmarks/bench_sharding.py [--quick] [--devices 4] [--out DIR]

Writes sharding.json (``sharding_quick.json`` with ``--quick``) into ``_common.results_dir()``
(``out/benchmarks/results/``, git-ignored; ``--out DIR``: ``DIR/benchmarks/results/``).

On a CPU machine the devices are XLA's forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set here before jax starts unless the
environment sets it): N logical devices that share the machine's cores. They prove that the
sharded programs run and measure their overhead (partitioning, the halo exchange, the psums,
the padding of a batch); they cannot show a speed-up beyond the physical cores, and on 2 cores
an unsharded run already uses both (XLA:CPU's intra-op threads). On a machine with N
accelerators the same script measures real scaling.

* ensemble: single passes of the full description (cubic ``L^3``, one site, velocity Verlet) at
  ``B`` speeds, every member running all steps (no stop plane), ``jax.vmap`` on one device
  (baseline) and ``sharded_map(..., jit=False)`` over 1, 2, 4 devices;
* slab: one full-lattice run (the paper's cubic framework, eight sites on a cell's corners
  straddling two slabs, velocity Verlet), ``jaxion.full.simulate`` on one device (baseline) and
  ``jaxion.slab.simulate_sharded`` over 1, 2, 4 devices.

Reported per row: seconds per step (the fastest of the timed calls / steps, the call least
disturbed by other processes on shared cores; for the ensemble also per member-step), compile
seconds (first call minus the median timed call: tracing, partitioning and XLA compilation) and
the largest difference from the baseline's final ion state.
"""

import argparse
import os
import sys
import warnings
from pathlib import Path


def _force_host_devices(count):
    """Ask XLA for ``count`` host devices, before jax is imported (kept if the environment sets one)."""
    flag = "--xla_force_host_platform_device_count"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}={count}".strip()


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one timed call (smoke run)")
    parser.add_argument("--devices", type=int, default=4, help="largest device count (forced host devices on CPU)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/benchmarks/results/sharding[_quick].json (default: _common.results_dir())")
    return parser.parse_args(argv)


def _counts(largest, available):
    counts = [n for n in (1, 2, 4, 8, 16) if n <= min(largest, available)]
    return counts


def main(argv=None):
    args = _arguments(argv)
    _force_host_devices(args.devices)

    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import time_call, write_json

    import jaxion as jx
    from jaxion import full
    from jaxion.sharding import device_mesh, sharded_map
    from jaxion.slab import simulate_sharded

    repeats = 1 if args.quick else 5
    counts = _counts(args.devices, jax.device_count())
    warnings.simplefilter("ignore", UserWarning)  # returning sound in the small boxes: the same in every row

    # --- ensemble -------------------------------------------------------------------------------
    size, members, steps, dt = (6, 8, 100, 0.01) if args.quick else (12, 32, 400, 0.01)
    system = jx.System(jx.SimpleCubic(), jx.Gaussian(0.05, 0.5), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
    start = jnp.array([0.3, 0.2, -3.5])
    speeds = jnp.linspace(4.0, 8.0, members)

    def member(speed):
        return full.simulate(system, start, jnp.array([0.0, 0.0, 1.0]) * speed, steps * dt, size=size, dt=dt,
                             solver="verlet", n_save=2)

    def ensemble_row(label, devices, call):
        timing = time_call(call, repeats)
        final = np.asarray(call().position_final)
        return dict(label=label, devices=devices, timing=timing, final=final)

    rows = [ensemble_row("vmap, one device", 1, lambda: jax.vmap(member)(speeds))]
    for count in counts:
        mesh = device_mesh(count)
        rows.append(ensemble_row(f"sharded_map over {count}", count,
                                 lambda mesh=mesh: sharded_map(member, speeds, mesh=mesh, jit=False)))
    baseline = rows[0]["final"]
    ensemble = [dict(label=row["label"], devices=row["devices"], members=members, steps=steps, size=size,
                     s_per_step=row["timing"]["min"] / steps,
                     us_per_member_step=1e6 * row["timing"]["min"] / (steps * members),
                     compile_s=row["timing"]["warmup"] - row["timing"]["median"], timing=row["timing"],
                     max_difference=float(np.max(np.abs(row["final"] - baseline)))) for row in rows]

    # --- slab -------------------------------------------------------------------------------------
    lattice_size, slab_steps = (16, 50) if args.quick else (48, 200)
    cage = jx.System(jx.SimpleCubic(), jx.Gaussian(0.5, 0.5),
                     sites=[(i, j, k) for i in (-1, 0) for j in (-1, 0) for k in (-1, 0)], mass=(1.0, 1.0, 1.0))
    position, velocity = jnp.array([-1.0, -1.0, -1.0]), jnp.array([0.3, 0.2, 0.5])
    options = dict(size=lattice_size, dt=0.01, solver="verlet", n_save=2)
    t1 = slab_steps * options["dt"]
    rows = [ensemble_row("full.simulate, one device", 1,
                         lambda: full.simulate(cage, position, velocity, t1, **options))]
    for count in counts:
        if lattice_size % count:
            continue
        mesh = device_mesh(count, axis_name="slab")
        rows.append(ensemble_row(f"slabs over {count}", count, lambda mesh=mesh: simulate_sharded(
            cage, position, velocity, t1, mesh=mesh, **options)))
    baseline = rows[0]["final"]
    slab = [dict(label=row["label"], devices=row["devices"], size=lattice_size, steps=slab_steps,
                 s_per_step=row["timing"]["min"] / slab_steps,
                 compile_s=row["timing"]["warmup"] - row["timing"]["median"], timing=row["timing"],
                 max_difference=float(np.max(np.abs(row["final"] - baseline)))) for row in rows]

    cores = os.cpu_count()
    backend = jax.default_backend()
    note = (f"{jax.device_count()} {backend} device(s) on {cores} cores. "
            + ("Forced host devices share the cores: these rows prove the sharded programs and measure their "
               "overhead, not a speed-up." if backend == "cpu" else "Real devices: the rows measure scaling."))
    print(f"== ensemble: {members} single passes, full description L = {size}, {steps} Verlet steps")
    print(f"{'':28s} {'ms/step':>9s} {'us/member-step':>15s} {'compile s':>10s} {'max diff':>9s}")
    for row in ensemble:
        print(f"{row['label']:28s} {1e3 * row['s_per_step']:9.3f} {row['us_per_member_step']:15.2f} "
              f"{row['compile_s']:10.2f} {row['max_difference']:9.1e}")
    print(f"== slab: one lattice L = {lattice_size}, {slab_steps} Verlet steps")
    print(f"{'':28s} {'ms/step':>9s} {'compile s':>10s} {'max diff':>9s}")
    for row in slab:
        print(f"{row['label']:28s} {1e3 * row['s_per_step']:9.3f} {row['compile_s']:10.2f} "
              f"{row['max_difference']:9.1e}")
    print(note)
    payload = dict(quick=args.quick, note=note, ensemble=ensemble, slab=slab)
    path = write_json("sharding_quick" if args.quick else "sharding", payload,
                      out_dir=None if args.out is None else os.path.join(args.out, "benchmarks", "results"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
