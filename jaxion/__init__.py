"""jaxion: a differentiable JAX simulator of ions moving through vibrating crystal frameworks."""

import jax

jax.config.update("jax_enable_x64", True)

from .lattice import Chain, Lattice, SimpleCubic  # noqa: E402

__all__ = ["Chain", "Lattice", "SimpleCubic"]
