"""The package's layers are in order: no module imports one above it (docs/design.md, "Layers").

Every ``import`` statement of every module under ``jaxion/`` is read from its source (the
function-level ones too: a hidden upward import is what this test exists to catch) and resolved
to a module of the package; its layer must not be above the importing module's. A module missing
from ``LAYERS`` fails the test, so a new module is placed deliberately.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxion"

# Lowest first. Within a layer, modules may import each other.
ORDER = ["base", "framework", "interface", "descriptions", "theory", "protocols", "application"]
LAYERS = {
    # numerics and conventions with no physics of their own
    "base": ["_checks", "_linalg", "units", "brillouin", "solvers", "sharding"],
    # the framework and the ion: models, potentials, response quantities (stencil, recoil, memory kernel)
    "framework": ["lattice", "potentials", "elastic", "materials", "system", "stencil", "response", "memory",
                  "thermal.neighbours", "thermal.model", "thermal.modes"],
    # what every description shares: the interface, stops, the result types, the run checks
    "interface": ["dynamics", "trajectory", "run_checks", "thermal.trajectory"],
    # the descriptions of the ion's motion
    "descriptions": ["full", "kernel", "local", "slab", "thermal.langevin", "thermal.coloured", "thermal.full"],
    # perturbative and equilibrium theory
    "theory": ["dissipation", "screening", "thermal.landscape", "thermal.wells", "thermal.transport"],
    # what users run: single pass, trapped runs, ensembles, transport, fits
    "protocols": ["simulation", "finite_box", "trapped", "fitting", "thermal.ensemble", "thermal.protocols"],
    # the paper's figures, plots, the command line, the package's front doors
    "application": ["experiments", "plotting", "cli", "__init__", "thermal.__init__", "__main__"],
}
LAYER_OF = {module: ORDER.index(layer) for layer, modules in LAYERS.items() for module in modules}


def module_name(path):
    """``jaxion/thermal/full.py`` -> ``thermal.full``; ``jaxion/thermal/__init__.py`` -> ``thermal.__init__``."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def package_of(name):
    """The package a module's relative imports start from (``thermal.full`` -> ``thermal``)."""
    parts = name.split(".")
    return parts[:-1]


def known(parts):
    """The listed module a dotted name refers to (``thermal`` alone is its ``__init__``)."""
    name = ".".join(parts)
    if name in LAYER_OF:
        return name
    if f"{name}.__init__" in LAYER_OF:
        return f"{name}.__init__"
    return None


def imported_modules(source, name):
    """``(line, module)`` for every import of a package module in the source of module ``name``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(name)[: len(package_of(name)) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "jaxion":
                base = []
                node_module = node.module.split(".")[1:]
                target = known(node_module) if node_module else None
                found.extend((node.lineno, m) for m in ([target] if target else []))
                continue
            else:
                continue
            prefix = base + (node.module.split(".") if node.module else [])
            target = known(prefix)
            if target is not None and node.module:
                found.append((node.lineno, target))
            for alias in node.names:  # "from . import dissipation" / "from .thermal import full"
                sub = known(prefix + [alias.name])
                if sub is not None and (target is None or not node.module):
                    found.append((node.lineno, sub))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "jaxion" and len(parts) > 1 and known(parts[1:]):
                    found.append((node.lineno, known(parts[1:])))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_placed_in_a_layer():
    unplaced = [module_name(path) for path in SOURCES if module_name(path) not in LAYER_OF]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_no_module_imports_from_a_layer_above_it(path):
    name = module_name(path)
    if name not in LAYER_OF:
        pytest.skip("not placed (the test above fails)")
    upward = [
        f"line {line}: {target} ({ORDER[LAYER_OF[target]]})"
        for line, target in imported_modules(path.read_text(), name)
        if LAYER_OF[target] > LAYER_OF[name]
    ]
    assert not upward, f"{name} ({ORDER[LAYER_OF[name]]}) imports from above its layer: {upward}"


def test_the_reader_sees_function_level_and_absolute_imports():
    # The reader itself, on a source written here as if it were jaxion/thermal/full.py: a function-level
    # relative import, an absolute one, a sibling module and a name imported from a module.
    source = ("def f():\n    from ..simulation import simulate\n    import jaxion.cli\n"
              "from . import transport\nfrom .model import IonInFramework\nfrom jaxion.memory import KernelCache\n")
    found = sorted(target for _, target in imported_modules(source, "thermal.full"))
    assert found == ["cli", "memory", "simulation", "thermal.model", "thermal.transport"]
