"""Test-session setup: four host (CPU) devices for the sharding tests (tests/test_sharding.py).

XLA reads ``--xla_force_host_platform_device_count`` once, when jax first starts its CPU client, so
it is set here, before any test module imports jax. Computations that do not ask for a mesh still
run on the first device (thermal ensembles, ``jaxion.thermal.run_ensemble``, are laid over all
four), and the suite's other files take the same CPU time with it, on the 2-core development
machine: tests/test_full.py 104 s with four host devices against 115 s without,
tests/test_thermal_protocols.py 81 s against 80 s. A count the environment already sets is kept.
"""

import os

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=4".strip()
