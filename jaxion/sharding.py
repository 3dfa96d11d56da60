"""Ensembles over devices: a batch laid out along one axis of a device mesh.

:func:`sharded_map` runs ``fn`` for every member of a batch, as ``jax.vmap(fn)`` under ``jax.jit``,
with the batch's leading axis split over the devices of a mesh axis
(``NamedSharding(mesh, PartitionSpec(axis))``):

    out[b] = fn(args_1[b], ..., args_k[b]),    b = 0 .. B-1,

each device computing ``B_pad / n`` members (``n`` devices on the axis, ``B_pad = n ceil(B / n)``:
the batch is padded with copies of its last member, and the padding is stripped from the result).
The members never communicate, so nothing crosses devices until the end, when the result is
returned as one global array (gathered onto every host in a multi-host job). The same call runs on
one device, on several devices of one host, and on all devices of a multi-host job started with
``jax.distributed.initialize()`` (``docs/sharding.md``), where every process makes the same call
with the same arguments.

Random numbers: :func:`member_keys` derives member ``b``'s key as ``fold_in(key, b)``, from the
base key and the member's index only, never by splitting per device, so a stochastic member's
result does not depend on how many devices the batch is spread over (under jax's default
partitionable threefry, the bits a key yields do not depend on the sharding either).

The whole lattice over devices (slabs and halo exchange) is :mod:`jaxion.slab`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import _checks

BATCH_AXIS = "batch"
# What tracing raises where a function reads a value as a Python number or a NumPy array.
_NEEDS_CONCRETE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                   jax.errors.TracerIntegerConversionError)


def device_mesh(devices=None, axis_name=BATCH_AXIS):
    """A 1-D :class:`jax.sharding.Mesh` named ``axis_name`` over ``devices``.

    Args:
        devices: a sequence of devices, an integer ``n`` (the first ``n`` of ``jax.devices()``),
            or ``None`` for every device of the job (``jax.devices()``: all hosts' devices in a
            multi-host job).
        axis_name: the mesh axis's name.

    Returns:
        ``Mesh`` with ``len(devices)`` devices along ``axis_name`` (axis type ``Auto``: the
        compiler places whatever the batch axis does not fix).
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"axis_name must be a non-empty string, got {axis_name!r}")
    everything = jax.devices()
    if devices is None:
        devices = everything
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(everything):
            raise ValueError(f"devices={devices} must be between 1 and the {len(everything)} devices available")
        devices = everything[: int(devices)]
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device")
    return Mesh(np.array(devices), (axis_name,), axis_types=(AxisType.Auto,))


def mesh_axis(mesh, axis_name=None):
    """The name of the axis of ``mesh`` to lay a batch (or a lattice) over, checked.

    ``axis_name=None`` takes the only axis of a 1-D mesh. ``ValueError`` for something that is not a
    ``Mesh`` or a mesh without that axis.
    """
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(f"the mesh has axes {mesh.axis_names}: name the one to use with axis_name=")
        return mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(f"the mesh has no axis {axis_name!r} (its axes: {mesh.axis_names})")
    return axis_name


def member_keys(key, count):
    """``count`` PRNG keys, member ``b``'s being ``jax.random.fold_in(key, b)``.

    Member ``b``'s key depends on ``key`` and ``b`` only: not on ``count``, the batching or the
    number of devices (the first ``k`` keys of any longer list are the same ``k`` keys).

    Args:
        key: a PRNG key (``jax.random.key``) or an integer seed.
        count: number of members (>= 1).

    Returns:
        ``(count,)`` typed key array.
    """
    _checks.require_integer("count", count, low=1)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key) or jnp.shape(key) != ():
        raise ValueError("key must be one typed PRNG key (jax.random.key(seed)) or an integer seed")
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(jnp.arange(count, dtype=jnp.uint32))


def sharded_map(fn, *batched, mesh=None, axis_name=None, jit=True, gather=True):
    """``jax.vmap(fn)(*batched)``, with the batch laid out over the devices of a mesh axis.

    Args:
        fn: a pure function of one member's arguments (arrays and pytrees of arrays); it may be
            an ``equinox.Module`` whose array leaves are then traced, not baked in, so a new
            parameter value reuses the compiled run (a new Python function, e.g. a lambda made
            per call, compiles again). Its result is a pytree of arrays.
        *batched: one or more pytrees whose array leaves all share the leading batch axis ``B``
            (``B >= 1``); typed PRNG key arrays (:func:`member_keys`) are allowed.
        mesh: a :class:`jax.sharding.Mesh`; ``None`` for :func:`device_mesh` over every device.
        axis_name: the mesh axis to lay the batch over (``None``: the only axis of a 1-D mesh).
            Other axes of the mesh hold replicas.
        jit: ``True``: one compiled program, ``jax.jit(jax.vmap(fn))`` with the batch's sharding on
            its inputs and outputs (``fn`` must be traceable: pure, no Python decisions on values).
            ``False``: ``jax.vmap(fn)`` runs eagerly on the laid-out batch, so ``fn``'s own checks see
            concrete parameters and every compiled computation inside it (a diffrax solve) is
            partitioned along the batch by the sharding of its inputs; the entry points
            ``jaxion.full.simulate``, ``jaxion.kernel.simulate``, ``jaxion.local.simulate`` and
            ``jaxion.simulate``, which check their options on concrete values, need this.
        gather: in a multi-host job, fetch the whole result onto every host (NumPy arrays); with
            ``False`` the result stays a global ``jax.Array`` whose shards live where they were
            computed. On one host the result is a ``jax.Array`` either way.

    Returns:
        ``fn``'s result with a leading axis ``B`` on every array leaf: member ``b`` is
        ``fn`` applied to member ``b`` of the arguments. The padding (``B`` rounded up to a
        multiple of the axis's device count, with copies of the last member) is removed.

    Raises:
        ValueError: no batched argument, a leaf without a leading axis, leaves whose leading
            axes differ, an empty batch, or a mesh without ``axis_name``.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    if not batched:
        raise ValueError("give at least one batched argument (arrays with a leading batch axis)")
    mesh = device_mesh() if mesh is None else mesh
    axis = mesh_axis(mesh, axis_name)
    leaves, structure = jax.tree.flatten(batched)
    size = _batch_size(leaves)
    devices = mesh.shape[axis]
    padded = -(-size // devices) * devices
    sharding = NamedSharding(mesh, P(axis))
    keys = tuple(_key_impl(leaf) for leaf in leaves)
    placed = [_place(_key_data(leaf), padded, sharding) for leaf in leaves]
    if jax.process_count() > 1:
        fn = _replicated(fn, mesh)
    if jit:
        try:
            result = _vmapped_jit(fn, structure, keys, sharding, placed)
        except _NEEDS_CONCRETE as error:
            raise ValueError(
                "fn needs concrete values where sharded_map traces it under jit (jaxion's simulate entry points "
                "check their options on concrete values): call sharded_map(..., jit=False)"
            ) from error
    else:
        result = _vmapped(fn, structure, keys, sharding, placed)
    if padded != size:
        result = jax.tree.map(lambda x: x[:size] if eqx.is_array(x) else x, result)
    if gather and jax.process_count() > 1:
        result = multihost_utils.process_allgather(result, tiled=True)
    return result


def _batch_size(leaves):
    """The common leading-axis length of ``leaves``; ``ValueError`` when there is none."""
    if not leaves:
        raise ValueError("the batched arguments hold no arrays")
    sizes = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(f"every batched leaf needs a leading batch axis, got a scalar {leaf!r}")
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"the batched leaves' leading axes differ: {sorted(sizes)}")
    (size,) = sizes
    if size == 0:
        raise ValueError("the batch is empty (leading axis 0)")
    return size


def _key_impl(leaf):
    """The PRNG implementation of a typed key array, else ``None``."""
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(leaf))
    return None


def _key_data(leaf):
    """Typed keys travel as their raw ``uint32`` data (and are wrapped again inside the map)."""
    return jax.random.key_data(leaf) if _key_impl(leaf) is not None else leaf


def _place(leaf, padded, sharding):
    """``leaf`` padded to ``padded`` members (copies of the last) and laid out as ``sharding``.

    Host values and arrays of this process: one transfer per device of its shard
    (``make_array_from_callback``; in a multi-host job each process places only its devices'
    shards, which is why every process passes the same whole batch). Traced values (a call
    inside ``jit``) are padded and constrained instead; global arrays already spread over the
    job are constrained too.
    """
    size = np.shape(leaf)[0]
    if isinstance(leaf, jax.core.Tracer) or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        if padded != size:
            leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], padded - size, axis=0)])
        return jax.lax.with_sharding_constraint(leaf, sharding) if isinstance(leaf, jax.core.Tracer) else leaf
    if jax.process_count() == 1 and isinstance(leaf, jax.Array):
        if padded != size:
            leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], padded - size, axis=0)])
        return jax.device_put(leaf, sharding)
    host = np.asarray(leaf)
    if host.dtype == np.float64 and not jax.config.jax_enable_x64:
        host = host.astype(np.float32)
    if padded != size:
        host = np.concatenate([host, np.repeat(host[-1:], padded - size, axis=0)])
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _replicated(fn, mesh):
    """``fn`` with its array leaves copied to every device of ``mesh`` (multi-host jobs: a jitted
    call over global devices takes global arrays, not one process's single-device ones)."""
    everywhere = NamedSharding(mesh, P())

    def spread(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, everywhere, lambda index: host[index])

    return jax.tree.map(lambda x: spread(x) if isinstance(x, jax.Array) and x.is_fully_addressable else x, fn)


def _vmapped(fn, structure, keys, sharding, leaves):
    """``jax.vmap(fn)`` over the placed leaves, inputs and outputs constrained to ``sharding``
    (batch axis over the mesh axis); eager, or compiled as :func:`_vmapped_jit`."""
    leaves = [jax.lax.with_sharding_constraint(leaf, sharding) for leaf in leaves]
    leaves = [leaf if impl is None else jax.random.wrap_key_data(leaf, impl=impl) for leaf, impl in zip(leaves, keys)]
    result = jax.vmap(fn)(*jax.tree.unflatten(structure, leaves))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding) if eqx.is_array(x) else x, result)


# ``fn``'s array leaves are traced (a new value reuses the compilation); ``structure``, ``keys``
# (PRNG implementations) and ``sharding`` are static.
_vmapped_jit = eqx.filter_jit(_vmapped)
