"""Single-pass losses over many speeds, one ensemble over every device of a (multi-host) job.

Every process runs this same script with the same arguments (JAX's multi-controller model): the
speeds are laid out over all devices of all processes by :func:`jaxion.sharding.sharded_map`,
each device integrates its share, and the losses are gathered onto every process at the end;
process 0 prints them and writes ``<out>/multi_host_ensemble.json``.

    # one process (all local devices; on CPU try XLA_FLAGS=--xla_force_host_platform_device_count=4)
    python docs/examples/multi_host_ensemble.py --quick

    # SLURM, e.g. 2 nodes x 4 GPUs, one process per GPU (jax.distributed reads SLURM's variables)
    srun --nodes=2 --ntasks-per-node=4 --gpus-per-task=1 python docs/examples/multi_host_ensemble.py --distributed

    # explicit coordinator (any launcher): the same command on every host, process ids 0 .. N-1
    python docs/examples/multi_host_ensemble.py --distributed --coordinator host0:12345 --processes 2 --process-id 0

See docs/sharding.md.
"""

import argparse
import json
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("full", "kernel", "local"), default="full")
    parser.add_argument("--speeds", type=int, default=256, help="number of speeds (ensemble members)")
    parser.add_argument("--size", type=int, default=32, help="lattice size L (full and kernel)")
    parser.add_argument("--quick", action="store_true", help="8 speeds on an L = 8 lattice (a smoke test)")
    parser.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() first")
    parser.add_argument("--coordinator", help="host:port of process 0 (else detected: SLURM, Open MPI, TPU)")
    parser.add_argument("--processes", type=int, help="number of processes (with --coordinator)")
    parser.add_argument("--process-id", type=int, help="this process's id (with --coordinator)")
    parser.add_argument("--out", default="out/examples", help="folder for the JSON (process 0 writes it)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.distributed:
        # Before any computation: connects the processes, after which jax.devices() lists every
        # process's devices. Without arguments the cluster (SLURM, Open MPI, TPU) is detected.
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.processes,
                                   process_id=args.process_id)

    import jaxion as jx  # float64 on
    from jaxion import full, kernel, local
    from jaxion.sharding import device_mesh, sharded_map
    from jaxion.simulation import pass_geometry

    count, size = (8, 8) if args.quick else (args.speeds, args.size)
    system = jx.System(jx.SimpleCubic(), jx.Gaussian(0.01, 0.5), sites=[(0, 0, 0)], mass=(jnp.inf, jnp.inf, 1.0))
    position, stop_z = pass_geometry(system, (0.5, 0.3))
    speeds = np.linspace(3.0, 12.0, count)  # the same on every process
    t1 = 1.5 * float(stop_z - position[2]) / speeds.min()
    module, options = {
        "full": (full, dict(size=size, dt=0.01, solver="verlet")),
        "kernel": (kernel, dict(size=size, dt=0.01)),
        "local": (local, dict(dt=0.01)),
    }[args.method]

    def loss(speed):
        """One member: the single-pass loss at ``speed`` (nan if the pass did not complete)."""
        trajectory = module.simulate(system, position, jnp.array([0.0, 0.0, 1.0]) * speed, t1, stop_z=stop_z,
                                     n_save=2, **options)
        completed = trajectory.position_final[2] >= stop_z
        kinetic = system.ion_kinetic_energy(jnp.array([0.0, 0.0, 1.0]) * speed)
        return jnp.where(completed, kinetic - system.ion_kinetic_energy(trajectory.velocity_final), jnp.nan)

    mesh = device_mesh()
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # returning-sound notes for the short boxes of --quick
        # jit=False: the simulate entry points check their options on concrete values
        losses = np.asarray(sharded_map(loss, jnp.asarray(speeds), mesh=mesh, jit=False))
    seconds = time.perf_counter() - began
    if jax.process_index() == 0:
        print(f"{count} single passes ({args.method}) over {mesh.size} devices of {jax.process_count()} "
              f"process(es) in {seconds:.1f} s")
        for speed, value in zip(speeds, losses):
            print(f"  v = {speed:6.3f}   loss = {value:.6e}")
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "multi_host_ensemble.json"), "w") as f:
            json.dump(dict(method=args.method, size=size, devices=mesh.size, processes=jax.process_count(),
                           seconds=seconds, speeds=speeds.tolist(), losses=losses.tolist()), f, indent=2)
    return speeds, losses


if __name__ == "__main__":
    main(sys.argv[1:])
