"""The optimizer comparison's figure (``curves.png`` of ``compare_optimizers.py``).

Validation and training error against updates and against training time,
one colour and line style per optimizer: for the seeds that finished ok each
seed thin, then their mean and min-max band where all of them have data; a
failed or interrupted run as a thin line ending in a cross. matplotlib is
imported when a figure is drawn, not before.
"""
import os

import numpy as np

from sentiment.common.files import atomic_write
from sentiment.experiments.reporting import format_mean_std

# The same colour for an optimizer in every figure (matplotlib's first seven).
COLORS = {"adadelta": "#1f77b4", "rmsprop": "#ff7f0e", "sgd": "#2ca02c", "adam": "#d62728",
          "adamw": "#9467bd", "nesterov": "#8c564b", "adagrad": "#e377c2"}
# ... and a line style each, so that curves that coincide (two optimizers stuck at
# chance) stay visible on top of each other.
STYLES = {"adadelta": "-", "rmsprop": (0, (6, 3)), "sgd": (0, (2, 2)), "adam": "-",
          "adamw": (0, (6, 3)), "nesterov": (0, (2, 2)), "adagrad": (0, (6, 2, 2, 2))}
# (row of panels, error plotted, its name); (column of panels, what x is).
PANELS = ((0, "valid_err", "validation error"), (1, "train_err", "training error"))
X_AXES = ((0, "update"), (1, "seconds"))


def common_grid(curves, xkey):
    """Where every curve has data: the shared updates, or a range of seconds."""
    if xkey == "update":
        shared = set.intersection(*({r["update"] for r in c} for c in curves))
        return np.array(sorted(shared), dtype=float)
    start = max(c[0]["seconds"] for c in curves)
    stop = min(c[-1]["seconds"] for c in curves)
    return np.linspace(start, stop, 400) if start < stop else np.zeros(0)


def aggregate(curves, key, xkey, grid):
    """Mean, min and max over ``curves`` of ``key``, interpolated on ``grid``."""
    ys = np.array([np.interp(grid, [r[xkey] for r in c], [r[key] for r in c])
                   for c in curves])
    return ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def time_unit(max_seconds):
    """``(seconds per unit, unit)`` for a time axis reaching ``max_seconds``."""
    if max_seconds < 300:
        return 1.0, "s"
    if max_seconds < 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def legend_label(row):
    """An optimizer's legend entry, from its row of the summary table."""
    label = "%s: %d/%d runs ok" % (row["optimizer"], row["ok"], row["runs"])
    if row["ok"]:
        label += ", best valid %s" % format_mean_std(row["valid_err_mean"],
                                                     row["valid_err_std"], "%.3f")
    if row["status"] not in ("ok", "not run"):
        label += " — " + row["status"]
    return label


def _xs(curve, xkey, div):
    return np.array([r[xkey] for r in curve], dtype=float) / div


def _draw_ok(ax, ok, key, xkey, div, style):
    """The runs that finished ok: each seed thin, their mean and band; one run thick."""
    if len(ok) > 1:
        for curve in ok:
            ax.plot(_xs(curve, xkey, div), [r[key] for r in curve], lw=0.8, alpha=0.45,
                    **style)
        grid = common_grid(ok, xkey)
        if grid.size:
            mean, lo, hi = aggregate(ok, key, xkey, grid)
            ax.plot(grid / div, mean, lw=2.2, **style)
            ax.fill_between(grid / div, lo, hi, color=style["color"], alpha=0.18, lw=0)
    elif ok:
        x = _xs(ok[0], xkey, div)
        ax.plot(x, [r[key] for r in ok[0]], lw=2.2, marker="o" if len(x) <= 30 else None,
                ms=3.5, **style)


def _draw_partial(ax, curve, key, xkey, div, style):
    """A failed or interrupted run: thin, a cross where it stopped; its highest error."""
    x = _xs(curve, xkey, div)
    y = np.array([r[key] for r in curve], dtype=float)
    ax.plot(x, y, lw=1.2, alpha=0.8, **style)
    ax.plot(x[-1:], y[-1:], color=style["color"], marker="x", ms=8, mew=2)
    return float(np.nanmax(y))


def _draw_optimizer(axes, runs, name, style, scale):
    """Every panel's curves of optimizer ``name``; the highest error drawn."""
    mine = [r for r in runs if r["optimizer"] == name and r["curve"]]
    ok = [r["curve"] for r in mine if r["status"] == "ok"]
    partial = [r["curve"] for r in mine if r["status"] != "ok"]
    top = 0.0
    for line, key, _ in PANELS:
        for col, xkey in X_AXES:
            ax = axes[line][col]
            div = 1.0 if xkey == "update" else scale
            _draw_ok(ax, ok, key, xkey, div, style)
            top = max([top] + [r[key] for c in ok for r in c])
            for curve in partial:
                top = max(top, _draw_partial(ax, curve, key, xkey, div, style))
    return top


def _style_axes(axes, top, has_data, batch_size, unit):
    """Labels, titles, grid and a shared error scale for the four panels."""
    for line, _, ylabel in PANELS:
        axes[line][0].set_ylabel("%s (share misclassified)" % ylabel, fontsize=11)
        for col in (0, 1):
            ax = axes[line][col]
            ax.grid(True, alpha=0.3)
            ax.set_ylim(0.0, min(1.0, top * 1.08 + 0.02) if top > 0 else 1.0)
            ax.tick_params(labelsize=10)
            ax.set_title("%s against %s" % (ylabel.capitalize(),
                                            "updates" if col == 0 else "training time"),
                         fontsize=12)
            if not has_data:
                ax.text(0.5, 0.5, "no validation yet", ha="center", va="center",
                        transform=ax.transAxes, fontsize=12, color="0.4")
        axes[line][0].set_xlabel("updates (minibatches of %d reviews)" % batch_size,
                                 fontsize=11)
        axes[line][1].set_xlabel("training time (%s, without compiling)" % unit, fontsize=11)


def _titles_and_legend(fig, handles, info):
    n_train, n_valid, _ = info["sizes"]
    fig.suptitle("LSTM sentiment classifier: %s on %s (%d train / %d valid reviews), "
                 "seeds %s" % (" vs ".join(info["optimizers"]),
                               os.path.basename(info["base"].dataset), n_train, n_valid,
                               ", ".join(map(str, info["seeds"]))), fontsize=14)
    fig.text(0.5, 0.925, "thick line: mean over the seeds that finished ok, where all of them "
             "have data; band: their min–max; thin lines: each seed; a line ending in ×: a "
             "failed or interrupted run",
             ha="center", fontsize=10, color="0.3")
    fig.legend(handles=handles, loc="lower center", ncol=1 if len(handles) > 2 else 2,
               fontsize=11, frameon=False)
    bottom = 0.1 + 0.028 * (len(handles) if len(handles) > 2 else 1)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=bottom,
                        hspace=0.35, wspace=0.08)


def plot_curves(path, runs, rows, info):
    """Draw the comparison's figure to ``path`` (PNG, written atomically).

    ``runs``: each run's record (``optimizer``, ``status``, ``curve``: its
    validation records); ``rows``: the summary table's rows, one per
    optimizer; ``info``: ``optimizers``, ``seeds``, ``sizes`` (train, valid,
    test) and ``base`` (the common Config). Returns False, drawing nothing,
    when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        return False
    all_seconds = [r["seconds"] for run in runs for r in run["curve"]]
    scale, unit = time_unit(max(all_seconds, default=0.0))
    fig = Figure(figsize=(13, 8.5), dpi=100)
    axes = fig.subplots(2, 2, sharey="row")
    by_name = {row["optimizer"]: row for row in rows}
    handles, top = [], 0.0
    for name in info["optimizers"]:
        style = dict(color=COLORS.get(name), ls=STYLES.get(name, "-"))
        handles.append(Line2D([], [], lw=2.5, label=legend_label(by_name[name]), **style))
        top = max(top, _draw_optimizer(axes, runs, name, style, scale))
    _style_axes(axes, top, bool(all_seconds), info["base"].batch_size, unit)
    _titles_and_legend(fig, handles, info)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return True


def plot_tuning(path, tuning):
    """Draw each optimizer's mean best validation error against its learning rate
    (log scale; the chosen rate circled) to ``path``. ``tuning``: ``choices``
    (:func:`sentiment.experiments.tuning.select`) and ``seeds``. False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(9, 5.5), dpi=100)
    ax = fig.subplots()
    for name, choice in tuning["choices"].items():
        points = [(lrate, mean) for lrate, mean, n_ok, n in choice["table"]
                  if mean is not None and n_ok == n]
        style = dict(color=COLORS.get(name), ls=STYLES.get(name, "-"))
        if points:
            ax.plot(*zip(*points), marker="o", lw=2, label=name, **style)
        failed = [lrate for lrate, _, n_ok, n in choice["table"] if n_ok < n]
        ax.plot(failed, [1.0] * len(failed), ls="none", marker="x", ms=9, mew=2,
                color=style["color"])
        if choice["lrate"] is not None:
            ax.plot([choice["lrate"]], [choice["valid_err"]], ls="none", marker="o", ms=15,
                    mfc="none", mew=2, color=style["color"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (AdaDelta: a factor on its step; log scale)", fontsize=11)
    seeds = tuning["seeds"]
    ax.set_ylabel("best validation error (%s)" % (
        "seed %d" % seeds[0] if len(seeds) == 1 else
        "mean over seeds %s" % ", ".join(map(str, seeds))), fontsize=11)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=10)
    ax.set_title("Validation error against the learning rate (circled: chosen; "
                 "x: the run failed)", fontsize=12)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return True
