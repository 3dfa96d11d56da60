"""The paper's numerical experiments (physics.md section 6) as functions returning data.

Each ``figN`` function runs one figure's protocol and returns a plain dict: ``"parameters"``
(everything needed to rerun it) and ``"curves"`` (one dict of NumPy arrays per curve: the speeds,
the simulated single-pass losses and the theory lines). With ``out`` set, the dict is also written
to ``out/figN.json`` after every finished batch of speeds, so an interrupted run keeps what it did.
``quick=True`` selects a small setting (few speeds and widths, a small lattice) that runs in
seconds; the defaults are the paper's grids.

Theory lines:

* ``eq13``: the perturbative loss, Eq. 13 (``jaxion.dissipation.loss_perturbative``);
* ``eq14``: the chain's closed form, Eq. 14 (``loss_chain_closed_form``);
* ``eq23``: the low-speed, time-local loss, Eq. 23 (``loss_low_speed``).
"""

import argparse
import json
import os
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import dissipation
from .full import FullLattice
from .lattice import Chain, SimpleCubic
from .potentials import Gaussian
from .simulation import pass_geometry, simulate, single_pass
from .system import System

PAPER_WIDTHS = (0.5, 1.0, 2.0, 4.0)
PAPER_IMPACTS = (0.0, 1.0)
FACE_SITES = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0))
CELL_SITES = FACE_SITES + ((0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1))
ION_MASS = (float("inf"), float("inf"), 1.0)


def paper_speeds(lowest, highest, count):
    """``count`` speeds spaced evenly on a log scale from ``lowest`` to ``highest``, ``(count,)``."""
    if not 0 < lowest <= highest or int(count) != count or count < 1:
        raise ValueError(f"speeds need 0 < lowest <= highest and a positive integer count, got {lowest}, {highest}, {count}")
    return np.geomspace(lowest, highest, int(count))


class _Recorder:
    """Keeps a figure's data and rewrites ``out/name.json`` whenever a piece of it is finished."""

    def __init__(self, name, parameters, out):
        self.data = {"figure": name, "parameters": parameters, "curves": [], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.path = None if out is None else Path(out) / f"{name}.json"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def save(self):
        if self.path is None:
            return
        temporary = self.path.with_suffix(".json.part")
        temporary.write_text(json.dumps(_jsonable(self.data), indent=1))
        os.replace(temporary, self.path)

    def finish(self):
        self.data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.save()
        return self.data


def _jsonable(value):
    """NumPy/JAX arrays and scalars -> lists and floats (``nan`` and ``inf`` kept as JSON extensions)."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist"):
        return np.asarray(value).tolist()
    return value


def _batches(speeds, batch):
    """Index arrays of ``batch`` consecutive speeds, slowest first (a vmapped batch runs as long as its
    slowest member, so similar speeds share one)."""
    order = np.argsort(speeds)
    return [order[i : i + batch] for i in range(0, len(order), batch)]


AUTO_STEP_MAX = 0.02  # periods; the 4th-order symplectic solver's energy error is ~1e-8 there
AUTO_STEPS_PER_CROSSING = 4  # steps per time the ion needs to cross one potential range


def pass_step(system, speeds):
    """The ``dt="auto"`` step of a batch of single passes with the symplectic solver:
    ``min(0.02, range / (4 v_max))``, so the fastest ion's force pulse is resolved (measured on
    a 12^3 lattice against Tsit5 at ``dt = 1e-3``: losses agree to 2e-6 relative from v = 1 to 80
    for widths 0.5 and 2, where a fixed ``dt = 0.01`` errs by 150% at v = 80, width 0.5)."""
    crossing = float(system.potential.range) / float(np.max(speeds))
    return min(AUTO_STEP_MAX, crossing / AUTO_STEPS_PER_CROSSING)


def _simulated_losses(system, speeds, start, size, batch, options, progress_bar):
    """Full-lattice single-pass losses at ``speeds`` in batches; ``nan`` where the ion did not pass.

    Default options: the 4th-order symplectic solver with ``dt="auto"`` (:func:`pass_step`)."""
    losses = np.full(len(speeds), np.nan)
    _, stop_z = pass_geometry(system, start)
    options = {"solver": "symplectic", "dt": "auto", **options}
    for index in _batches(speeds, batch):
        batch_options = dict(options)
        if batch_options["dt"] == "auto":
            batch_options["dt"] = pass_step(system, speeds[index])
        result = single_pass(system, jnp.asarray(speeds[index]), start=start, method="full", size=size,
                             **batch_options)
        passed = np.asarray(result.trajectory.position_final[..., 2]) >= float(stop_z) - 1e-6
        losses[index] = np.where(passed, np.asarray(result.loss), np.nan)
        progress_bar.update(len(index))
        yield losses


def _loss_figure(name, parameters, cases, out, progress, line_points):
    """Run ``cases`` (dicts with ``label`` parameters, ``system``, ``start``, ``speeds``, ``theory`` and
    simulation settings), recording each curve's theory first and its simulated points as their
    batches finish. Each theory is evaluated at the simulated speeds (key ``eq13`` etc., for
    comparison) and on ``line_points`` log-spaced speeds (``line_speed``, ``eq13_line``, for plots)."""
    recorder = _Recorder(name, parameters, out)
    total = sum(len(case["speeds"]) for case in cases if case["simulate"])
    with tqdm(total=total, desc=name, unit="pass", disable=not progress) as bar:
        for case in cases:
            speeds = np.asarray(case["speeds"], dtype=float)
            line = paper_speeds(np.min(speeds), np.max(speeds), line_points)
            curve = dict(case["label"], speed=speeds, line_speed=line)
            for key, theory in case["theory"].items():
                values = np.asarray(theory(np.concatenate([speeds, line])))
                curve[key], curve[f"{key}_line"] = values[: len(speeds)], values[len(speeds) :]
            curve["simulation"] = np.full(len(speeds), np.nan)
            curve["validity"] = _validity(case["system"], case["start"], case["size"])
            recorder.data["curves"].append(curve)
            recorder.save()
            if not case["simulate"]:
                continue
            steps = _simulated_losses(case["system"], speeds, case["start"], case["size"], case["batch"],
                                      case["options"], bar)
            for losses in steps:
                curve["simulation"] = losses.copy()
                recorder.save()
    return recorder.finish()


def _validity(system, start, size):
    """What decides where a simulated pass can match the infinite-lattice perturbative theory:
    the largest potential ``barrier`` on the straight path, the fastest ``sound_speed`` and the
    periodic ``box`` length ``size * spacing`` (see :func:`agreement`)."""
    position, stop_z = pass_geometry(system, start)
    z = jnp.linspace(position[2], stop_z, 401)
    path = jnp.concatenate([jnp.broadcast_to(position[:2], (z.shape[0], 2)), z[:, None]], axis=1)
    return dict(barrier=float(jnp.max(system.static_potential(path))),
                sound_speed=FullLattice(system, size).sound_speed(),
                box=float(size * system.lattice.spacing), width=float(system.potential.range))


def _cubic_theory(system, start):
    """Eq. 13 and the low-speed Eq. 23 as functions of the speeds."""
    return {"eq13": lambda v: dissipation.loss_perturbative(system, v, start),
            "eq23": lambda v: dissipation.loss_low_speed(system, v, start)}


def fig2(kappas=(1.0, 0.0), widths=PAPER_WIDTHS, impacts=PAPER_IMPACTS, speeds=None, size=100, phi0=0.01,
         k=99 / 4, batch=50, simulate=True, quick=False, out=None, progress=True, **options):
    """Fig. 2: single-pass loss of an ion passing one mass of a periodic chain.

    Chain ``k_par = k_perp = k`` with isotropic confinement ``kappa``; Gaussian ``phi0``, width
    ``lambda``; ion mass ``mu = 1`` moving along z at transverse offset ``sigma0 = s y``.
    Simulation (``single_pass(method="full", size=size)``) against Eq. 13 and Eq. 14.

    Args:
        kappas, widths, impacts: the grids of ``kappa``, ``lambda`` and ``s``.
        speeds: ``(K,)`` initial speeds (default 50 from 2 to 80; quick: 3).
        size: number of chain masses (periodic).
        batch: speeds per vectorised simulation (each distinct batch compiles once: the run length
            is fixed by its slowest speed; a chain is cheap enough to run all speeds together).
        simulate: run the simulations (``False``: theory lines only).
        quick: small setting (``kappa = 1``, ``lambda = 1``, 3 speeds, 64 masses).
        out: directory for ``fig2.json`` (written as curves finish), or ``None``.
        **options: passed to the full simulation (``dt``, ``solver``, ...).

    Returns:
        dict with ``parameters`` and ``curves``: each curve has ``kappa``, ``width``, ``s``,
        ``speed (K,)``, ``simulation (K,)``, ``eq13 (K,)``, ``eq14 (K,)`` and the theory on a
        finer grid for plotting, ``line_speed (P,)``, ``eq13_line (P,)``, ``eq14_line (P,)``.
    """
    if quick:
        kappas, widths, size, batch = kappas[:1], (1.0,), min(size, 64), 3
        speeds = paper_speeds(5.0, 40.0, 3) if speeds is None else speeds
    speeds = paper_speeds(2.0, 80.0, 50) if speeds is None else np.asarray(speeds, dtype=float)
    parameters = dict(k_par=k, k_perp=k, kappas=list(kappas), widths=list(widths), impacts=list(impacts), phi0=phi0,
                      mu=1.0, size=size, speeds=speeds, options=options)
    cases = []
    for kappa in kappas:
        chain = Chain(k_par=k, k_perp=k, kappa_par=kappa, kappa_perp=kappa)
        for width in widths:
            potential = Gaussian(phi0, width)
            system = System(chain, potential, sites=[(0,)], mass=ION_MASS)
            for s in impacts:
                start = (0.0, s)
                theory = {
                    "eq13": lambda v, system=system, start=start: dissipation.loss_perturbative(system, v, start),
                    "eq14": lambda v, chain=chain, potential=potential, s=s: dissipation.loss_chain_closed_form(
                        chain, potential, v, s),
                }
                cases.append(dict(label=dict(kappa=kappa, width=width, s=s), system=system, start=start, speeds=speeds,
                                  theory=theory, simulate=simulate, size=size, batch=batch, options=options))
    return _loss_figure("fig2", parameters, cases, out, progress, 12 if quick else 60)


def fig4(widths=PAPER_WIDTHS, impacts=PAPER_IMPACTS, speeds=None, size=50, phi0=0.01, k1=15.0, k2=5.0, spacing=2.0,
         batch=5, simulate=True, quick=False, out=None, progress=True, **options):
    """Fig. 4: an ion passing one mass of the simple cubic lattice (``k1``, ``k2``, ``alpha = spacing``).

    Simulation on a periodic ``size^3`` lattice against Eq. 13 and the low-speed line Eq. 23.
    The ion moves along z at transverse offset ``sigma0 = s y``.

    Args:
        widths, impacts, speeds: grids of ``lambda``, ``s`` and initial speeds (default 50 speeds
            from 1 to 80).
        size: lattice side ``L`` (default the paper's 50).
        quick: small setting (``lambda = 1``, ``s = 0``, speeds 10 to 40, ``L <= 10``: a smoke run; at
            low speed such a small box is far from the infinite lattice, see :func:`finite_size`).
        Other arguments as in :func:`fig2`.

    Returns:
        dict with ``parameters`` and ``curves`` (``width``, ``s``, ``speed``, ``simulation``,
        ``eq13``, ``eq23``).
    """
    if quick:
        widths, impacts, size, batch = (1.0,), impacts[:1], min(size, 10), 3
        speeds = paper_speeds(10.0, 40.0, 3) if speeds is None else speeds
    speeds = paper_speeds(1.0, 80.0, 50) if speeds is None else np.asarray(speeds, dtype=float)
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=spacing)
    parameters = dict(k1=k1, k2=k2, spacing=spacing, widths=list(widths), impacts=list(impacts), phi0=phi0, mu=1.0,
                      size=size, speeds=speeds, options=options)
    cases = []
    for width in widths:
        system = System(lattice, Gaussian(phi0, width), sites=[(0, 0, 0)], mass=ION_MASS)
        for s in impacts:
            start = (0.0, s)
            cases.append(dict(label=dict(width=width, s=s), system=system, start=start, speeds=speeds,
                              theory=_cubic_theory(system, start), simulate=simulate, size=size, batch=batch,
                              options=options))
    return _loss_figure("fig4", parameters, cases, out, progress, 6 if quick else 60)


def fig5(configurations=("face", "cell"), widths=PAPER_WIDTHS, speeds=None, size=50, phi0=0.0025, k1=15.0, k2=5.0,
         spacing=2.0, batch=5, simulate=True, quick=False, out=None, progress=True, **options):
    """Fig. 5: an ion through the centre of a cube face, ``(alpha/2, alpha/2, z)``, interacting with the
    4 masses of that face (``"face"``) or the 8 masses of the cell (``"cell"``).

    Simulation on a periodic ``size^3`` lattice against Eq. 13 and the low-speed line Eq. 23.
    Arguments as in :func:`fig4`; ``configurations`` chooses among ``"face"`` and ``"cell"``
    (quick: the face only, ``lambda = 1``, speeds 10 to 40, ``L <= 10``).

    Returns:
        dict with ``parameters`` and ``curves`` (``configuration``, ``width``, ``speed``,
        ``simulation``, ``eq13``, ``eq23``).
    """
    sites_of = {"face": FACE_SITES, "cell": CELL_SITES}
    unknown = [c for c in configurations if c not in sites_of]
    if unknown:
        raise ValueError(f"configurations must be among {tuple(sites_of)}, got {unknown}")
    if quick:
        configurations, widths, size, batch = configurations[:1], (1.0,), min(size, 10), 3
        speeds = paper_speeds(10.0, 40.0, 3) if speeds is None else speeds
    speeds = paper_speeds(1.0, 80.0, 50) if speeds is None else np.asarray(speeds, dtype=float)
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=spacing)
    start = (spacing / 2.0, spacing / 2.0)
    parameters = dict(k1=k1, k2=k2, spacing=spacing, configurations=list(configurations), widths=list(widths),
                      phi0=phi0, mu=1.0, size=size, start=list(start), speeds=speeds, options=options)
    cases = []
    for configuration in configurations:
        for width in widths:
            system = System(lattice, Gaussian(phi0, width), sites=sites_of[configuration], mass=ION_MASS)
            cases.append(dict(label=dict(configuration=configuration, width=width), system=system, start=start,
                              speeds=speeds, theory=_cubic_theory(system, start), simulate=simulate, size=size,
                              batch=batch, options=options))
    return _loss_figure("fig5", parameters, cases, out, progress, 6 if quick else 60)


def cubic_figure_from_command_line(figure, out, argv=None):
    """The notebooks' driver for :func:`fig4` / :func:`fig5`: parse ``--quick``, ``--size``,
    ``--speeds`` (unknown arguments, e.g. Jupyter's, are ignored), run the figure and return
    ``(data, out_dir)``; quick runs write to ``out/quick`` and never overwrite full-size results."""
    runs = {"fig4": fig4, "fig5": fig5}
    if figure not in runs:
        raise ValueError(f"figure must be one of {tuple(runs)}, got {figure!r}")
    parser = argparse.ArgumentParser(description=f"Paper's {figure}: full simulations against Eq. 13")
    parser.add_argument("--quick", action="store_true", help="smoke run: one width, 3 speeds, L = 10")
    parser.add_argument("--size", type=int, default=50, help="lattice side L")
    parser.add_argument("--speeds", type=int, default=16,
                        help="simulated speeds per curve, log-spaced from 1 to 80 (the paper: 50)")
    args, _ = parser.parse_known_args(argv)
    out_dir = Path(out) / ("quick" if args.quick else "")
    speeds = None if args.quick else paper_speeds(1.0, 80.0, args.speeds)
    return runs[figure](size=args.size, speeds=speeds, quick=args.quick, out=out_dir), out_dir


def fig6(size=100, t1=30.0, phi0=1.0, width=0.5, speed=7.5, k1=15.0, k2=5.0, spacing=2.0, local_c=(0.5, 1.0),
         full_solver="symplectic", full_dt=1e-2, local_dt=1e-2, n_save=600, quick=False, out=None, progress=True):
    """Fig. 6: an ion trapped between 8 masses on a cube edge, ``(0, 0, j alpha)``, ``j = 0..7``.

    Starts at ``z = 3.5 alpha`` with speed ``speed`` along z (too slow to escape for the defaults).
    The full lattice solution (``method="full"``, ``size^3`` masses) against the time-local Eq. 26
    (``method="local"``, fixed step ``local_dt``) for each softening coefficient in ``local_c``.
    The full run uses ``full_solver`` with step ``full_dt`` (the paper: 5th-order Runge-Kutta,
    ``"tsit5"`` with ``dt = 1e-3``; the 4th-order symplectic solver reaches the same accuracy with
    ten times fewer steps, see ``jaxion.full``).

    Returns:
        dict with ``parameters`` and ``curves``: one per method (``method``, ``c`` for local,
        ``ts``, ``position`` (z), ``velocity`` (z), ``energy``, ``seconds`` of wall time).
    """
    if quick:
        size, t1, n_save = min(size, 12), min(t1, 1.0), min(n_save, 100)
    lattice = SimpleCubic(k1=k1, k2=k2, spacing=spacing)
    system = System(lattice, Gaussian(phi0, width), sites=[(0, 0, j) for j in range(8)], mass=ION_MASS)
    position = jnp.array([0.0, 0.0, 3.5 * spacing])
    velocity = jnp.array([0.0, 0.0, speed])
    parameters = dict(k1=k1, k2=k2, spacing=spacing, phi0=phi0, width=width, speed=speed, size=size, t1=t1,
                      full_solver=full_solver, full_dt=full_dt, local_dt=local_dt, local_c=list(local_c), n_save=n_save)
    recorder = _Recorder("fig6", parameters, out)
    runs = [("full", None, dict(size=size, dt=full_dt, solver=full_solver, n_save=n_save, progress=progress))]
    runs += [("local", c, dict(c=c, dt=local_dt, n_save=n_save)) for c in local_c]
    for method, c, options in runs:
        began = time.perf_counter()
        trajectory = simulate(system, position, velocity, t1, method=method, **options)
        trajectory.position.block_until_ready()
        seconds = time.perf_counter() - began
        recorder.data["curves"].append(dict(method=method, c=c, seconds=seconds, ts=np.asarray(trajectory.ts),
                                            position=np.asarray(trajectory.position[:, 2]),
                                            velocity=np.asarray(trajectory.velocity[:, 2]),
                                            energy=np.asarray(trajectory.energy)))
        recorder.save()
    return recorder.finish()


def finite_size(sizes=(8, 12, 16, 24, 32), speed=4.0, width=1.0, s=0.0, phi0=0.01, k1=15.0, k2=5.0, spacing=2.0,
                quick=False, out=None, progress=True, **options):
    """Single-pass loss versus lattice side ``L`` at fixed parameters (cubic, one mass), with Eq. 13
    for the infinite lattice as the reference the simulations should converge to.

    Returns:
        dict with ``parameters`` and one curve: ``size (n,)``, ``simulation (n,)``, ``eq13`` (scalar),
        ``relative_difference (n,)``.
    """
    if quick:
        sizes = tuple(sizes)[:2]
    system = System(SimpleCubic(k1=k1, k2=k2, spacing=spacing), Gaussian(phi0, width), sites=[(0, 0, 0)], mass=ION_MASS)
    start = (0.0, s)
    parameters = dict(k1=k1, k2=k2, spacing=spacing, phi0=phi0, width=width, s=s, speed=speed, sizes=list(sizes),
                      options=options)
    recorder = _Recorder("finite_size", parameters, out)
    reference = float(dissipation.loss_perturbative(system, jnp.asarray(speed), start))
    curve = dict(size=np.asarray(sizes), simulation=np.full(len(sizes), np.nan), eq13=reference)
    recorder.data["curves"].append(curve)
    for i, size in enumerate(tqdm(sizes, desc="finite size", unit="L", disable=not progress)):
        curve["simulation"][i] = float(single_pass(system, speed, start=start, method="full", size=size, **options).loss)
        curve["relative_difference"] = curve["simulation"] / reference - 1.0
        recorder.save()
    return recorder.finish()


def low_speed_limit(width=1.0, s=0.0, speeds=None, phi0=0.01, k1=15.0, k2=5.0, spacing=2.0, quick=False):
    """Eq. 13 tends to Eq. 23 as the speed goes to zero (cubic lattice, one mass).

    Returns:
        dict with ``parameters`` and one curve: ``speed (K,)``, ``eq13``, ``eq23`` and their ratio.
    """
    if speeds is None:
        speeds = paper_speeds(0.25, 8.0, 5 if quick else 12)
    speeds = np.asarray(speeds, dtype=float)
    system = System(SimpleCubic(k1=k1, k2=k2, spacing=spacing), Gaussian(phi0, width), sites=[(0, 0, 0)], mass=ION_MASS)
    start = (0.0, s)
    eq13 = np.asarray(dissipation.loss_perturbative(system, jnp.asarray(speeds), start))
    eq23 = np.asarray(dissipation.loss_low_speed(system, jnp.asarray(speeds), start))
    parameters = dict(k1=k1, k2=k2, spacing=spacing, phi0=phi0, width=width, s=s)
    return {"figure": "low_speed_limit", "parameters": parameters,
            "curves": [dict(width=width, s=s, speed=speeds, eq13=eq13, eq23=eq23, ratio=eq13 / eq23)]}


def write_agreement(data, theories, out):
    """:func:`agreement` of the simulations with each theory in ``theories``, written to
    ``out/agreement.json`` and printed; returns ``{theory: agreement}``."""
    results = {theory: agreement(data, theory) for theory in theories}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "agreement.json").write_text(json.dumps(_jsonable(results), indent=1))
    for theory, result in results.items():
        print(f"simulation vs {theory}: max relative deviation {result['max_relative_deviation']:.2e} "
              f"over {result['points']} of {result['total']} points")
    return results


def agreement(data, theory="eq13", max_sensitivity=0.02, interaction_window=6.0, min_loss_fraction=1e-10):
    """Largest relative deviation ``|simulation / theory - 1|`` over the points where the
    infinite-lattice perturbative theory applies to the simulated pass. A point counts when

    * the speed hardly changes: the ion slows by ``dv / v ~ barrier / (2 KE)`` inside the
      potential (``KE = mu v^2 / 8 pi^2``, ``barrier`` the largest potential on the path), which
      shifts the loss by ``|d ln Delta / d ln v| * barrier / (2 KE)``; this must be below
      ``max_sensitivity`` (it excludes slow passes and, more strongly, the exponentially suppressed
      losses of a gapped chain, whose logarithmic slope is large);
    * the periodic box holds the pass: sound emitted while the ion is within
      ``interaction_window / 2`` widths of the sites cannot go round the box and come back,
      ``box > sound_speed * interaction_window * width / v``;
    * the predicted loss exceeds ``min_loss_fraction`` of the kinetic energy (the integrator's
      energy error is ~1e-10 of the total).

    Returns:
        dict with ``max_relative_deviation``, ``points`` (compared) of ``total``, the ``speed``
        and ``curve`` label of the largest deviation, and the criteria used.
    """
    mu = data["parameters"].get("mu", 1.0)
    worst, points, total = dict(max_relative_deviation=0.0), 0, 0
    for curve in data["curves"]:
        speed = np.asarray(curve["speed"], dtype=float)
        simulated, predicted = np.asarray(curve["simulation"], float), np.asarray(curve[theory], float)
        line_speed, line = np.log(np.asarray(curve["line_speed"], float)), np.asarray(curve[f"{theory}_line"], float)
        slope = np.interp(np.log(speed), 0.5 * (line_speed[1:] + line_speed[:-1]),
                          np.diff(np.log(np.maximum(line, 1e-300))) / np.diff(line_speed))
        kinetic = mu * speed**2 / (8.0 * np.pi**2)
        valid = curve["validity"]
        usable = (
            (np.abs(slope) * valid["barrier"] / (2.0 * kinetic) < max_sensitivity)
            & (valid["box"] > valid["sound_speed"] * interaction_window * valid["width"] / speed)
            & (predicted > min_loss_fraction * kinetic)
            & np.isfinite(simulated)
        )
        total += int(np.sum(np.isfinite(simulated)))
        points += int(np.sum(usable))
        if not np.any(usable):
            continue
        deviation = np.abs(simulated[usable] / predicted[usable] - 1.0)
        i = int(np.argmax(deviation))
        if deviation[i] >= worst["max_relative_deviation"]:
            label = {key: value for key, value in curve.items() if isinstance(value, (int, float, str))}
            worst = dict(max_relative_deviation=float(deviation[i]), speed=float(speed[usable][i]), curve=label)
    return dict(worst, points=points, total=total, theory=theory, max_sensitivity=max_sensitivity,
                interaction_window=interaction_window)
