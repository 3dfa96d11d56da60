"""Many trajectories at once: batches vmapped over PRNG keys and laid out over the devices, each
batch written as it finishes.

A long transport run must not lose its results to a late error or an interrupt, so
:func:`run_ensemble` saves every finished batch to ``out/<name>_batchNNN.npz`` (written to a
temporary name and renamed, so a file present is complete) before starting the next; the
trajectories are the independent blocks of every error bar computed from them. The keys are
split from one seed, key ``i`` the same for any count (jax's default partitionable threefry), and
each trajectory depends only on its own key, so the same seed gives the same trajectories whatever
the batch size and however many devices a batch is spread over (:func:`jaxion.sharding.sharded_map`).
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import _checks
from ..sharding import sharded_map
from .trajectory import ThermalTrajectory


class FailedTrajectoryWarning(UserWarning):
    """Some trajectories of an ensemble failed physically and were left out of the results."""


def trajectory_keys(seed, count):
    """``count`` independent PRNG keys from an integer ``seed`` (the same for any batching)."""
    _checks.require_integer("count", count, low=1)
    return jax.random.split(jax.random.key(seed), count)


def _save_batch(path, batch):
    temporary = path.with_name(path.name + ".partial.npz")
    np.savez(temporary, **{name: np.asarray(getattr(batch, name)) for name in ThermalTrajectory.__dataclass_fields__})
    os.replace(temporary, path)


def run_ensemble(simulate, keys, *, batch=16, out=None, name="trajectories", progress=True, mesh=None):
    """Run ``simulate(key) -> ThermalTrajectory`` for every key, ``batch`` keys per vmapped call,
    each call's batch laid out over the devices (:func:`jaxion.sharding.sharded_map`).

    Args:
        simulate: a pure function of one PRNG key (it samples its own initial state); an
            ``equinox.Module`` (:class:`~jaxion.thermal.ThermalRun`) has its array leaves traced,
            so a new temperature or material reuses the compiled run.
        keys: ``(B,)`` PRNG keys (:func:`trajectory_keys`).
        batch: trajectories per compiled call (the last batch is padded, not recompiled); a
            multiple of the number of devices keeps every device busy.
        out: folder to write each finished batch into (created), or ``None``.
        name: file stem of the batches.
        progress: show a progress bar over trajectories.
        mesh: the :class:`jax.sharding.Mesh` to lay each batch over (its only axis, or one named
            ``"batch"``); ``None`` for every device (:func:`jaxion.sharding.device_mesh`).

    Returns:
        the batched :class:`ThermalTrajectory` (leading axis ``B``) of the trajectories that
        stayed finite; a :class:`FailedTrajectoryWarning` names how many did not (they are
        never averaged in). Raises ``FloatingPointError`` if none stayed finite.
    """
    _checks.require_integer("batch", batch, low=1)
    count = len(keys)
    folder = None if out is None else Path(out)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    pieces = []
    with tqdm(total=count, desc=name, unit="traj", disable=not progress) as bar:
        for number, start in enumerate(range(0, count, batch)):
            chunk = keys[start:start + batch]
            padded = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            result = jax.tree_util.tree_map(lambda x: x[: len(chunk)], _sharded(simulate, padded, mesh))
            if folder is not None:
                _save_batch(folder / f"{name}_batch{number:03d}.npz", result)
            pieces.append(result)
            bar.update(len(chunk))
    trajectories = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *pieces)
    finite = np.asarray(trajectories.finite)
    if not finite.any():
        raise FloatingPointError(f"all {count} trajectories became non-finite: the time step is too large")
    if not finite.all():
        _checks.warn(
            f"{int((~finite).sum())} of {count} trajectories became non-finite and are left out",
            FailedTrajectoryWarning)
        trajectories = jax.tree_util.tree_map(lambda x: x[finite], trajectories)
    return trajectories


def _sharded(simulate, keys, mesh):
    """``simulate`` vmapped over ``keys`` under jit, the keys laid over ``mesh``."""
    axis = None if mesh is None or len(mesh.axis_names) == 1 else "batch"
    return sharded_map(simulate, keys, mesh=mesh, axis_name=axis)
