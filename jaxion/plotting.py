"""Matplotlib figures of the data returned by :mod:`jaxion.experiments`, and phonon band plots.

Loss figures follow the paper: log-log loss versus initial speed, simulations as open markers
(kernel-method results shown beside full-lattice ones as crosses), Eq. 13 as solid lines, the
closed form Eq. 14 (chain) or the low-speed line Eq. 23 (cubic) dashed, one colour per potential
width. Every function returns the ``matplotlib.figure.Figure``.
"""

from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

STYLE = {
    "font.family": "serif",
    "mathtext.fontset": "cm",
    "font.size": 10,
    "axes.labelsize": 11,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.minor.visible": True,
    "ytick.minor.visible": True,
    "lines.linewidth": 1.3,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}
THEORY_STYLE = {
    "eq13": dict(linestyle="-", label="Eq. 13 (perturbative)"),
    "eq14": dict(linestyle="--", label="Eq. 14 (closed form)"),
    "eq23": dict(linestyle="--", label="Eq. 23 (low speed)"),
}
# Simulated points by method (the "method" parameter of jaxion.experiments data; "full" when absent).
MARKER_STYLE = {
    "full": dict(marker="o", mfc="none", ms=4.5),
    "kernel": dict(marker="x", ms=3.5, mew=0.9),
}
# Simulated points left out of the agreement statistic (jaxion.experiments.exclusions), marked over their circle.
EXCLUSION_STYLE = {
    "slowdown": dict(marker="+", ms=8, mew=0.9),
    "box": dict(marker="x", ms=6, mew=0.9),
    "unresolved": dict(marker="_", ms=8, mew=1.2),
}
# Speeds are in the paper's units (physics.md section 1): oscillator lengths l per period 2 pi / Omega.
SPEED_UNIT = r"$l$ per period"
_WIDTH_SYMBOL = r"$\lambda$"


@contextmanager
def style():
    """The textbook look used by every jaxion figure (serif, inward ticks on all sides)."""
    with plt.rc_context(STYLE):
        yield


def _colours(values):
    cmap = matplotlib.colormaps["viridis"]
    values = sorted(set(values))
    return {value: cmap(0.85 * i / max(len(values) - 1, 1)) for i, value in enumerate(values)}


def _format_value(value):
    return f"{value:g}" if value != 0.5 else "1/2"


def _simulated_points(ax, curve, colour, method, label):
    """Plot a curve's positive simulated losses with the method's marker; returns whether any were drawn."""
    speed = np.asarray(curve["speed"], dtype=float)
    simulated = np.asarray(curve.get("simulation", np.full(len(speed), np.nan)), dtype=float)
    positive = np.isfinite(simulated) & (simulated > 0)
    if np.any(positive):
        ax.plot(speed[positive], simulated[positive], linestyle="none", color=colour, label=label,
                **MARKER_STYLE[method])
    return bool(np.any(positive))


def _excluded_points(ax, curve, left_out, colour):
    """Mark the drawn simulated points of ``curve`` that ``left_out`` (one entry of
    ``jaxion.experiments.exclusions``) leaves out of the agreement; returns the reasons marked."""
    speed = np.asarray(curve["speed"], dtype=float)
    simulated = np.asarray(curve.get("simulation", np.full(len(speed), np.nan)), dtype=float)
    shown = np.isfinite(simulated) & (simulated > 0)
    marked = set()
    for reason, marker in EXCLUSION_STYLE.items():
        chosen = shown & np.asarray(left_out[reason], dtype=bool)
        if np.any(chosen):
            ax.plot(speed[chosen], simulated[chosen], linestyle="none", color=colour, **marker)
            marked.add(reason)
    return marked


def _meaningful_bottom(ax, curves, theories, excluded):
    """Cut a loss panel's y axis at half the lower of the resolution floor (``floor`` of
    ``jaxion.experiments.exclusions``) and the lowest simulated point (ignoring points below 1e-3 of
    the floor, rounding), when a theory line reaches below it: a gapped chain's ``exp(-1/v^2)``
    losses fall to 1e-74, far below anything a simulation resolves. The top is then twice the largest value."""
    floor = min(float(np.min(left_out["floor"])) for left_out in excluded)
    values = lambda key: np.concatenate([np.asarray(c.get(key, []), dtype=float) for c in curves])
    positive = lambda x: x[np.isfinite(x) & (x > 0)]
    simulated = positive(values("simulation"))
    cut = min([floor] + simulated[simulated >= 1e-3 * floor].tolist())
    lines = positive(np.concatenate([values(f"{theory}_line") for theory in theories]))
    if lines.size and np.min(lines) < cut:
        ax.set_ylim(0.5 * cut, 2.0 * float(np.max(np.concatenate([lines, simulated]))))


def _loss_axes(ax, curves, theories, colour_key="width", kernel_curves=(), excluded=None):
    """Draw one panel: per curve, the simulated points and the theory lines, coloured by ``colour_key``;
    ``kernel_curves`` (kernel-method results) add their points as crosses. ``excluded`` (per curve, as
    ``jaxion.experiments.exclusions``) marks the points left out of the agreement and limits the y axis
    to the resolved range (:func:`_meaningful_bottom`). Returns the exclusion reasons marked."""
    colours = _colours([c[colour_key] for c in list(curves) + list(kernel_curves)])
    marked = set()
    for curve in kernel_curves:
        _simulated_points(ax, curve, colours[curve[colour_key]], "kernel", None)
    for index, curve in enumerate(curves):
        colour = colours[curve[colour_key]]
        speed = np.asarray(curve["speed"], dtype=float)
        label = f"{_WIDTH_SYMBOL} = {_format_value(curve[colour_key])}"
        if _simulated_points(ax, curve, colour, "full", label):
            label = None
        if excluded is not None:
            marked |= _excluded_points(ax, curve, excluded[index], colour)
        for theory in theories:
            fine = f"{theory}_line" in curve
            values = np.asarray(curve[f"{theory}_line"] if fine else curve.get(theory, []), dtype=float)
            if values.size:
                ax.plot(np.asarray(curve["line_speed"] if fine else speed, dtype=float),
                        np.where(values > 0, values, np.nan), color=colour, label=label,
                        linestyle=THEORY_STYLE[theory]["linestyle"])
                label = None
    _log_axes(ax)
    if excluded is not None and curves:
        _meaningful_bottom(ax, curves, theories, excluded)
    return marked


def _log_axes(ax):
    """Log-log axes; speeds labelled as plain numbers at 1, 2, 5 x 10^n."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _method_legend(ax, theories, markers=(("full", "simulation"),)):
    """A black-and-white key of marker and line styles; ``markers``: ``(method, label)`` per kind of points."""
    handles = [plt.Line2D([], [], linestyle="none", color="k", label=label, **MARKER_STYLE[method])
               for method, label in markers]
    handles += [plt.Line2D([], [], color="k", **THEORY_STYLE[t]) for t in theories]
    if ax.get_legend() is not None:
        ax.add_artist(ax.get_legend())  # keep the widths' legend drawn on the same panel
    ax.legend(handles=handles, loc="lower left")


def _panel_grid(rows, cols, width=3.4, height=2.8):
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(width * len(cols), height * len(rows)), squeeze=False,
                             sharex=True, sharey="row", constrained_layout=True)
    return fig, axes


def _has_simulation(data):
    return any(np.any(np.isfinite(np.asarray(c.get("simulation", [np.nan]), float))) for c in data["curves"])


def _point_legend(data, kernel):
    """``(method, label)`` of the simulated points drawn: ``data``'s alone as "simulation", or the
    full-lattice and kernel points named with their lattice side."""
    if kernel is None:
        return [("full", "simulation")] if _has_simulation(data) else []
    return [("full", f"full lattice, L = {data['parameters']['size']}"),
            ("kernel", f"memory kernel, L = {kernel['parameters']['size']}")]


def loss_panels(data, row_key, col_key, theories, row_title, col_title, kernel=None):
    """Generic loss figure: panels indexed by the curves' ``row_key`` and ``col_key`` labels (either may
    be ``None`` for a single row/column). With ``kernel`` (kernel-method results of the same figure),
    its points are drawn beside ``data``'s (theory lines from ``data``)."""
    curves = data["curves"]
    rows = sorted({c[row_key] for c in curves}, reverse=True) if row_key else [None]
    cols = sorted({c[col_key] for c in curves}) if col_key else [None]
    in_panel = lambda c, row, col: ((row_key is None or c[row_key] == row)
                                    and (col_key is None or c[col_key] == col))
    with style():
        fig, axes = _panel_grid(rows, cols)
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                ax = axes[i, j]
                chosen = [c for c in curves if in_panel(c, row, col)]
                extra = [c for c in (kernel or {"curves": []})["curves"] if in_panel(c, row, col)]
                _loss_axes(ax, chosen, theories, kernel_curves=extra)
                title = ", ".join(t for t in (row_title(row) if row_key else "", col_title(col) if col_key else "") if t)
                ax.set_title(title, fontsize=10)
                if i == len(rows) - 1:
                    ax.set_xlabel(rf"initial speed $v_0$ ({SPEED_UNIT})")
                if j == 0:
                    ax.set_ylabel(r"loss $\Delta$ ($\hbar\Omega$)")
        axes[0, -1].legend(loc="upper right")
        _method_legend(axes[-1, 0], theories, _point_legend(data, kernel))
    return fig


def fig2(data):
    """Fig. 2: chain; rows ``kappa``, columns ``s``; simulation, Eq. 13, Eq. 14."""
    return loss_panels(data, "kappa", "s", ("eq13", "eq14"), lambda k: rf"$\kappa$ = {k:g}", lambda s: f"s = {s:g}")


def fig4(data, kernel=None):
    """Fig. 4: cubic, one mass; columns ``s``; simulation, Eq. 13, Eq. 23. ``kernel``: kernel-method
    results drawn beside ``data``'s full-lattice points (e.g. ``experiments.full_and_kernel``)."""
    return loss_panels(data, None, "s", ("eq13", "eq23"), None, lambda s: f"one mass, s = {s:g}", kernel)


def fig5(data, kernel=None):
    """Fig. 5: cubic, four face / eight cell masses; columns by configuration; ``kernel`` as in :func:`fig4`."""
    names = {"face": "four masses (face)", "cell": "eight masses (cell)"}
    return loss_panels(data, None, "configuration", ("eq13", "eq23"), None, lambda c: names.get(c, c), kernel)


def fig6(data):
    """Fig. 6: the trapped ion's z(t) (top) and energy (bottom), full against time-local."""
    with style():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.0), sharex=True, constrained_layout=True)
        for curve in data["curves"]:
            ts = np.asarray(curve["ts"], dtype=float)
            keep = np.isfinite(ts)
            label = "full lattice" if curve["method"] == "full" else f"time-local, c = {curve['c']:g}"
            style_ = dict(color="k") if curve["method"] == "full" else dict(linestyle="--")
            top.plot(ts[keep], np.asarray(curve["position"], float)[keep], label=label, **style_)
            bottom.plot(ts[keep], np.asarray(curve["energy"], float)[keep], label=label, **style_)
        top.set_ylabel(r"ion position $z$ ($l$)")
        bottom.set_ylabel(r"energy ($\hbar\Omega$)")
        bottom.set_xlabel(r"time $\tau$ (periods)")
        top.legend(loc="upper right")
    return fig


def finite_size(data):
    """Loss versus lattice side ``L`` with the infinite-lattice Eq. 13 as a horizontal line."""
    curve = data["curves"][0]
    with style():
        fig, ax = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
        ax.plot(curve["size"], curve["simulation"], "o-", mfc="none", color="k", label="simulation")
        ax.axhline(float(curve["eq13"]), linestyle="--", color="C1", label="Eq. 13, infinite lattice")
        ax.set_xlabel(r"lattice side $L$")
        ax.set_ylabel(r"loss $\Delta$ ($\hbar\Omega$)")
        p = data["parameters"]
        ax.set_title(rf"$v_0$ = {p['speed']:g}, $\lambda$ = {p['width']:g}, s = {p['s']:g}", fontsize=10)
        ax.legend()
    return fig


def low_speed_limit(data, ax=None):
    """``Delta / v`` versus speed: Eq. 13 flattening onto the constant of Eq. 23 (3D drag)."""
    curve = data["curves"][0]
    with style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
        speed = np.asarray(curve["speed"], float)
        ax.plot(speed, np.asarray(curve["eq13"], float) / speed, "-", color="k", label=THEORY_STYLE["eq13"]["label"])
        ax.plot(speed, np.asarray(curve["eq23"], float) / speed, "--", color="C3", label=THEORY_STYLE["eq23"]["label"])
        _log_axes(ax)
        ax.set_xlabel(rf"speed $v$ ({SPEED_UNIT})")
        ax.set_ylabel(rf"$\Delta / v$ ($\hbar\Omega$ / ({SPEED_UNIT}))")
        ax.set_title(rf"3D, one mass, $\lambda$ = {_format_value(curve['width'])}, s = {curve['s']:g}", fontsize=10)
        ax.legend(loc="upper left")
    return ax.figure


def demo(chain_data, low_speed_data, notes=None, excluded=None, reasons=None):
    """The ``jaxion demo`` figure: the chain panels of Fig. 2 plus the 3D low-speed check, and
    ``notes`` (text, e.g. the agreement numbers) under it when there is room. ``excluded`` (per
    chain curve, ``jaxion.experiments.exclusions``) marks the points left out of the agreement,
    with ``reasons`` (``agreement(...)["reasons"]``) as the legend, and limits the y axes to the
    range the simulations resolve."""
    kappas = sorted({c["kappa"] for c in chain_data["curves"]}, reverse=True)
    impacts = sorted({c["s"] for c in chain_data["curves"]})
    marked = set()
    with style():
        fig = plt.figure(figsize=(3.4 * (len(impacts) + 1), 2.9 * len(kappas) + 0.5), constrained_layout=True)
        grid = fig.add_gridspec(len(kappas), len(impacts) + 1)
        for i, kappa in enumerate(kappas):
            for j, s in enumerate(impacts):
                ax = fig.add_subplot(grid[i, j])
                chosen = [k for k, c in enumerate(chain_data["curves"]) if c["kappa"] == kappa and c["s"] == s]
                marked |= _loss_axes(ax, [chain_data["curves"][k] for k in chosen], ("eq13", "eq14"),
                                     excluded=None if excluded is None else [excluded[k] for k in chosen])
                ax.set_title(rf"chain, $\kappa$ = {kappa:g}, s = {s:g}", fontsize=10)
                if j == 0:
                    ax.set_ylabel(r"loss $\Delta$ ($\hbar\Omega$)")
                if i == len(kappas) - 1:
                    ax.set_xlabel(rf"initial speed $v_0$ ({SPEED_UNIT})")
                if i == 0 and j == 0:
                    widths = ax  # its legend of the widths goes beside the notes when there is room
                if i == len(kappas) - 1 and j == len(impacts) - 1:
                    _method_legend(ax, ("eq13", "eq14"))
        low_speed_limit(low_speed_data, ax=fig.add_subplot(grid[0, -1]))
        if notes and len(kappas) > 1:
            ax = fig.add_subplot(grid[1:, -1])
            ax.axis("off")
            ax.text(0.0, 1.0, notes, va="top", ha="left", fontsize=9, transform=ax.transAxes)
            ax.legend(*widths.get_legend_handles_labels(), loc="lower left", ncols=2)
        else:
            widths.legend(loc="lower left")
        if marked:
            handles = [plt.Line2D([], [], linestyle="none", color="k", label=(reasons or {}).get(key, key),
                                  **EXCLUSION_STYLE[key]) for key in EXCLUSION_STYLE if key in marked]
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), title_fontsize=8,
                       title="simulated points left out of the agreement statistic (marks combine where several apply):")
    return fig


def bands(lattice, path=None, grid=24, ax=None):
    """Phonon band structure along Gamma-X-M-Gamma-R (cubic) or Gamma-Z (chain), with the density of
    states on a side panel, phonopy style. Frequencies in units of ``Omega`` (``omega / Omega``)."""
    structure = lattice.band_structure(path)
    frequencies = np.asarray(structure["frequencies"])
    top = 1.05 * float(np.max(frequencies))
    omega = np.linspace(0.0, top, 300)
    dos = np.asarray(lattice.density_of_states(omega, grid=grid))
    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(6.0, 3.6), sharey=True, constrained_layout=True,
                                          gridspec_kw=dict(width_ratios=(3, 1)))
        left.plot(structure["distance"], frequencies, color="k")
        for tick in structure["ticks"]:
            left.axvline(tick, color="0.6", linewidth=0.6)
        left.set_xticks(structure["ticks"], structure["labels"])
        left.tick_params(axis="x", which="minor", bottom=False, top=False)
        left.set_xlim(structure["ticks"][0], structure["ticks"][-1])
        left.set_ylim(0.0, top)
        left.set_ylabel(r"frequency $\omega/\Omega$")
        right.fill_betweenx(omega, dos, color="0.8")
        right.plot(dos, omega, color="k")
        right.set_xlim(0.0, None)
        right.set_xlabel("DOS")
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` (parents created) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with style():
        fig.savefig(path)
    plt.close(fig)
    return path
