"""Compare the tutorial's optimizers (AdaDelta, RMSProp, SGD) in one command.

``python compare_optimizers.py`` trains the LSTM of ``lstm.py`` once per
optimizer and seed. Within a seed every run starts from the same initial
parameters, on the same train/valid/test split, and sees the same minibatch
order: ``lstm.make_rngs(seed)`` gives one independent stream per purpose, and
none depends on the optimizer. Only the update rule differs.

It writes to ``--out`` (default ``runs/compare``):

- ``results.csv`` / ``results.md``: per optimizer, mean and sample standard
  deviation over the seeds that finished of the best validation error, the
  test and training errors of that model, updates to the best validation,
  epochs, seconds and updates per second; failed runs (a NaN/infinite cost,
  an exception) are counted as such ("failed (bad cost) in 1/3 seeds");
- ``curves.png``: validation and training error against updates and against
  training time, one line per optimizer (mean over seeds, min-max band);
- ``runs.jsonl``: one JSON object per finished run (optimizer, seed, status,
  ``lstm.train_lstm``'s result without its history, the initial parameters'
  digest, updates to the best validation);
- ``<optimizer>-seed<seed>/``: what ``lstm.py`` writes for the run
  (``lstm_model.npz``, ``.json``, ``.log.jsonl``, ``.ckpt.npz``) and
  ``train.log``, the tutorial's progress lines.

The tables and the figure are rewritten (atomically) after every run, so
Ctrl-C keeps what finished: the run in progress stops cleanly (its best model
and checkpoint are saved; ``lstm.py --resume`` can continue it), the
comparison stops there and exits with 130.

Exit codes: 0 when at least one run finished with status ``ok`` (failed runs
are in the tables), 1 when every run failed, 2 on a usage or data error, 130
after Ctrl-C.
"""
import argparse
import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shlex
import sys
import time
import traceback

import numpy as np

import lstm
from imdb import DataError

PROG = "compare_optimizers.py"
DEFAULT_SEEDS = (123, 124, 125)
DEFAULT_OUT = os.path.join("runs", "compare")
MODEL_FILE = "lstm_model.npz"
# What lstm.py writes for a run (saveto=MODEL_FILE), and our copy of its output.
RUN_FILES = (MODEL_FILE, "lstm_model.json", "lstm_model.log.jsonl", "lstm_model.ckpt.npz",
             "train.log")
# The same colour for an optimizer in every figure (matplotlib's first three).
COLORS = {"adadelta": "#1f77b4", "rmsprop": "#ff7f0e", "sgd": "#2ca02c"}
# ... and a line style each, so that curves that coincide (two optimizers stuck at
# chance) stay visible on top of each other.
STYLES = {"adadelta": "-", "rmsprop": (0, (6, 3)), "sgd": (0, (2, 2))}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Columns of results.csv: one row per optimizer. *_mean / *_std are over the
# runs with status ok (sample standard deviation; empty with fewer than two).
STATS = ("valid_err", "test_err", "train_err", "updates_to_best", "epochs", "seconds",
         "updates_per_s")
CSV_COLUMNS = (["optimizer", "runs", "ok", "failed", "status", "seeds_ok"]
               + ["%s_%s" % (name, s) for name in STATS for s in ("mean", "std")])
FAILURE_TEXT = {"bad_cost": "failed (bad cost)", "error": "failed (error)",
                "interrupted": "interrupted"}


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------
class _Rejected(argparse.Action):
    """An lstm.py flag that makes no sense here: a usage error saying why."""

    def __init__(self, option_strings, dest, instead="", **kwargs):
        self.instead = instead
        kwargs.update(nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("%s is not accepted here: %s" % (option_string, self.instead))


def _seed(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("seeds must be 0 or more, not %d" % value)
    return value


def build_parser():
    """This script's flags, then every ``lstm.py`` training flag (passed through).

    ``--optimizer``, ``--seed``, ``--saveto`` and ``--resume`` are refused
    with a message naming what to use instead.
    """
    defaults = lstm.Config()
    p = argparse.ArgumentParser(
        prog=PROG, add_help=False,
        usage="%(prog)s [--optimizers NAME [NAME ...]] [--seeds N [N ...]] "
              "[--max-epochs N] [--out DIR] [training options] [-h]",
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train lstm.py's sentiment LSTM with each optimizer and seed, "
                    "every run of a seed from the same initial parameters, data split "
                    "and minibatch order, and compare them: results.csv, results.md "
                    "and curves.png in --out, rewritten after each run.",
        epilog="Each run saves its model, options, JSON log, checkpoint and the "
               "tutorial's output (train.log) in OUT/<optimizer>-seed<seed>/; "
               "OUT/runs.jsonl has one line per finished run. Progress goes to "
               "standard error. Exit code: 0 if at least one run finished ok, 1 if "
               "all failed, 2 on a usage or data error, 130 after Ctrl-C (the runs "
               "finished so far stay in the tables).")
    p._optionals.title = "comparison options"
    lstm.add_config_args(p)
    lstm.add_training_args(p, exclude=("optimizer", "seed", "saveto", "max_epochs"),
                           title="training options (lstm.py's own flags, the same "
                                 "for every run)")
    a = p.add_argument
    a("-h", "--help", action="help", help="show this help message and exit")  # not lstm.py's
    a("--optimizers", nargs="+", choices=lstm.OPTIMIZERS,
      default=list(lstm.TUTORIAL_OPTIMIZERS), metavar="NAME",
      help="optimizers to compare, among %s (the tutorial's rules: adadelta and "
           "rmsprop ignore --lrate; sgd and adam use it)" % ", ".join(lstm.OPTIMIZERS))
    a("--seeds", nargs="+", type=_seed, default=list(DEFAULT_SEEDS), metavar="N",
      help="one run per optimizer and seed; a seed fixes the initial parameters, the "
           "split, the test subset, the minibatch order and dropout")
    a("--max-epochs", type=int, default=defaults.max_epochs,
      help="maximum number of passes over the training set, per run (early stopping "
           "may end a run sooner)")
    a("--out", default=DEFAULT_OUT, metavar="DIR",
      help="folder for the tables, the figure and one sub-folder per run")
    for flag, instead in (
            ("--optimizer", "choose the optimizers with --optimizers NAME [NAME ...]"),
            ("--seed", "choose the seeds with --seeds N [N ...]"),
            ("--saveto", "each run saves to OUT/<optimizer>-seed<seed>/%s; choose OUT "
                         "with --out" % MODEL_FILE),
            ("--resume", "a comparison starts its runs afresh; continue one run with "
                         "python lstm.py --resume OUT/<optimizer>-seed<seed>/"
                         "lstm_model.ckpt.npz"),
            ("--summary", "print a model's summary with python lstm.py --summary")):
        a(flag, action=_Rejected, instead=instead)
    a("--debug", action="store_true", help="show tracebacks on errors")
    return p


def parse_args(argv=None):
    """``(args, base)``: the parsed flags and the Config common to every run."""
    parser = build_parser()
    try:
        args = lstm.parse_with_config(parser, argv)
    except DataError as exc:
        parser.error(str(exc))
    args.optimizers = list(dict.fromkeys(args.optimizers))  # drop repeats, keep order
    args.seeds = list(dict.fromkeys(args.seeds))
    values = vars(args).copy()
    for own in ("optimizers", "seeds", "out", "debug", "source", "preset", "config"):
        values.pop(own)
    for key in ("optimizer", "seed", "saveto"):  # from a preset: chosen per run here
        values.pop(key, None)
    try:
        base = lstm.Config.from_dict(dict(values, optimizer=args.optimizers[0],
                                          seed=args.seeds[0], saveto="")).validate()
    except ValueError as exc:
        parser.error(str(exc))
    # The training-error curves need the train split at each validation.
    base = dataclasses.replace(base, monitor=",".join(
        ["train"] + [m for m in base.monitored() if m != "train"]))
    return args, base


def run_name(optimizer, seed):
    return "%s-seed%d" % (optimizer, seed)


# ---------------------------------------------------------------------------
# Progress on standard error.
# ---------------------------------------------------------------------------
def _duration(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


class Progress:
    """One line per run: rewritten in place on a terminal, a line per validation otherwise."""

    def __init__(self, stream, n_runs, updates_per_epoch, max_epochs):
        self.stream = stream
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.n_runs = n_runs
        self.max_updates = max(1, updates_per_epoch * max(max_epochs, 0))
        self.max_epochs = max_epochs
        self.walls = []  # wall seconds of the finished runs (compiling included)
        self.open = False

    def _emit(self, text, final=False):
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
            self.open = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, index, optimizer, seed):
        self.index, self.t0, self.best = index, time.time(), None
        self.prefix = "[%d/%d] %s seed %d" % (index + 1, self.n_runs, optimizer, seed)
        self._emit("%s: building and compiling the model..." % self.prefix)

    def validation(self, record):
        valid = record["valid_err"]
        if self.best is None or valid <= self.best[0]:
            self.best = (valid, record["update"])
        per_update = record["seconds"] / max(record["update"], 1)
        run_left = max(self.max_updates - record["update"], 0) * per_update
        setup = (time.time() - self.t0) - record["seconds"]  # loading and compiling
        later = (self.n_runs - self.index - 1) * (setup + self.max_updates * per_update)
        self._emit("%s: epoch %d/%d, update %d, valid err %.4f, best %.4f (update %d), "
                   "ETA <= %s (all runs <= %s)"
                   % (self.prefix, record["epoch"] + 1, self.max_epochs, record["update"],
                      valid, self.best[0], self.best[1], _duration(run_left),
                      _duration(run_left + later)))

    def finish(self, run):
        self.walls.append(time.time() - self.t0)
        r = run.get("result")
        if run["status"] == "ok":
            text = ("ok: best valid err %.4f at update %s, test err %.4f, %d epochs, %s"
                    % (r["valid_err"], run["updates_to_best"], r["test_err"], r["epochs"],
                       _duration(r["seconds"])))
        else:
            text = FAILURE_TEXT.get(run["status"], run["status"])
            if run.get("error"):
                text += ": " + run["error"]
            if r:
                text += " after %d updates" % r["updates"]
        self._emit("%s: %s (%s with compiling; log: %s)"
                   % (self.prefix, text, _duration(self.walls[-1]), run["log"]), final=True)

    def note(self, text):
        if self.open:
            self.stream.write("\n")
            self.open = False
        self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------
def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def data_sizes(options, source):
    """``(n_train, n_valid, n_test)`` as every run will see them (any seed).

    Also builds a missing ``imdb.pkl`` once, and turns a missing or bad
    dataset into one :class:`DataError` before anything is compiled.
    """
    splits = lstm.load_splits(options, lstm.make_rngs(options.seed), source, io.StringIO())
    return tuple(len(split[0]) for split in splits)


def run_one(base, optimizer, seed, out_dir, source, progress):
    """Train one run; return its record (``curve`` holds the validation records)."""
    folder = os.path.join(out_dir, run_name(optimizer, seed))
    options = dataclasses.replace(base, optimizer=optimizer, seed=seed,
                                  saveto=os.path.join(folder, MODEL_FILE))
    log_path = os.path.join(folder, "train.log")
    run = dict(optimizer=optimizer, seed=seed, status=None, error=None, result=None,
               init_sha256=None, updates_to_best=None, seconds_to_best=None,
               epoch_of_best=None, model=options.saveto, log=log_path)
    curve = []

    def callback(record):
        curve.append(dict(record))
        progress.validation(record)

    try:
        os.makedirs(folder, exist_ok=True)
        # A run folder holds one run: no model or checkpoint left from an earlier one.
        for stale in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, stale))
        log = open(log_path, "w", encoding="utf-8")
    except OSError as exc:
        raise DataError("%s: cannot write (%s)" % (log_path, exc.strerror or exc)) from None
    with log:
        try:
            # lstm.py's own stderr line ("Training took ...") goes to the log too.
            with contextlib.redirect_stderr(log):
                result = lstm.train_lstm(options, source=source, out=log, callback=callback)
        except DataError:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, or one while compiling
            run.update(status="interrupted", error="stopped by Ctrl-C")
        except Exception as exc:  # noqa: BLE001 -- reported, the comparison goes on
            traceback.print_exc(file=log)
            run.update(status="error", error="%s: %s" % (type(exc).__name__, _one_line(exc)))
        else:
            result = {k: v for k, v in result.items() if k != "history_errs"}
            run.update(status=result["status"], result=result,
                       init_sha256=result["init_sha256"])
            best = [r for r in curve if r["best"]]
            if best:  # the last record marked best is the model that was saved
                run.update(updates_to_best=best[-1]["update"],
                           seconds_to_best=best[-1]["seconds"],
                           epoch_of_best=best[-1]["epoch"])
    run["curve"] = curve
    return run


def compare(args, base, err):
    """Run every (seed, optimizer) pair, rewriting the outputs after each run."""
    out_dir = args.out
    sizes = data_sizes(base, args.source)
    updates_per_epoch = -(-sizes[0] // base.batch_size)
    plan = [(seed, optimizer) for seed in args.seeds for optimizer in args.optimizers]
    progress = Progress(err, len(plan), updates_per_epoch, base.max_epochs)
    info = dict(command=" ".join(["python", PROG] + [shlex.quote(a) for a in args.argv]),
                sizes=sizes, base=base, optimizers=args.optimizers, seeds=args.seeds,
                planned=len(plan))
    progress.note("%s: %d runs (%s x seeds %s) on %s: %d train / %d valid / %d test "
                  "reviews, %d updates an epoch, at most %d epochs; writing to %s"
                  % (PROG, len(plan), " ".join(args.optimizers),
                     " ".join(map(str, args.seeds)), base.dataset, sizes[0], sizes[1],
                     sizes[2], updates_per_epoch, base.max_epochs, out_dir))
    runs = []
    interrupted = False
    try:
        for index, (seed, optimizer) in enumerate(plan):
            progress.start(index, optimizer, seed)
            run = run_one(base, optimizer, seed, out_dir, args.source, progress)
            runs.append(run)
            progress.finish(run)
            write_outputs(out_dir, runs, info)
            if run["status"] == "interrupted":  # lstm.train_lstm stopped it on Ctrl-C
                interrupted = True
                break
    except KeyboardInterrupt:  # Ctrl-C outside a run's training loop
        interrupted = True
        write_outputs(out_dir, runs, info)
    except DataError:
        if runs:
            write_outputs(out_dir, runs, info)
        raise
    if interrupted:
        progress.note("%s: interrupted after %d of %d runs; the finished ones are in %s"
                      % (PROG, sum(r["status"] != "interrupted" for r in runs), len(plan),
                         os.path.join(out_dir, "results.md")))
        return 130
    n_ok = sum(r["status"] == "ok" for r in runs)
    progress.note("%s: %d of %d runs ok; tables: %s, %s; curves: %s"
                  % (PROG, n_ok, len(runs), os.path.join(out_dir, "results.md"),
                     os.path.join(out_dir, "results.csv"),
                     os.path.join(out_dir, "curves.png")))
    return 0 if n_ok else 1


# ---------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------
def _metrics(run):
    """The numbers of one run that the tables summarise."""
    r = run["result"]
    return dict(valid_err=r["valid_err"], test_err=r["test_err"], train_err=r["train_err"],
                updates_to_best=run["updates_to_best"], epochs=r["epochs"],
                seconds=r["seconds"],
                updates_per_s=r["updates"] / r["seconds"] if r["seconds"] > 0 else None)


def _mean_std(values):
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def summarize(runs, optimizers):
    """One dict per optimizer (in ``optimizers`` order): counts, status text, statistics."""
    rows = []
    for name in optimizers:
        mine = [r for r in runs if r["optimizer"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        notes = []
        for status in ("bad_cost", "error", "interrupted"):
            n = sum(r["status"] == status for r in mine)
            if n:
                notes.append("%s in %d/%d seeds" % (FAILURE_TEXT[status], n, len(mine)))
        other = sorted({r["status"] for r in mine} - {"ok", "bad_cost", "error",
                                                       "interrupted"})
        notes += ["status %s" % s for s in other]
        status = "; ".join(notes) if notes else ("ok" if ok else "not run")
        row = dict(optimizer=name, runs=len(mine), ok=len(ok),
                   failed=sum(r["status"] in ("bad_cost", "error") for r in mine),
                   status=status, seeds_ok=" ".join(str(r["seed"]) for r in ok))
        metrics = [_metrics(r) for r in ok]
        for stat in STATS:
            row[stat + "_mean"], row[stat + "_std"] = _mean_std(m[stat] for m in metrics)
        rows.append(row)
    return rows


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "%.6g" % value
    return str(value)


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row[k]) for k in CSV_COLUMNS})
    return buffer.getvalue()


def _pm(mean, std, fmt):
    if mean is None:
        return "–"
    return fmt % mean + ("" if std is None else " ± " + fmt % std)


def _differs(base):
    """``name=value`` of the options that differ from lstm.py's defaults."""
    defaults = lstm.Config()
    return ["%s=%s" % (f.name, getattr(base, f.name)) for f in dataclasses.fields(base)
            if f.name not in ("optimizer", "seed", "saveto", "ydim")
            and getattr(base, f.name) != getattr(defaults, f.name)]


def markdown_text(rows, runs, info):
    base, (n_train, n_valid, n_test) = info["base"], info["sizes"]
    finished = sum(r["status"] != "interrupted" for r in runs)
    lines = [
        "# Optimizer comparison: %s" % ", ".join(info["optimizers"]),
        "",
        "`%s`" % info["command"],
        "",
        "lstm.py's LSTM on `%s` (%d train / %d valid / %d test reviews), seeds %s; "
        "%d of %d runs finished. Within a seed every optimizer starts from the same initial "
        "parameters and sees the same split and minibatch order."
        % (base.dataset, n_train, n_valid, n_test, ", ".join(map(str, info["seeds"])),
           finished, info["planned"]),
        "",
        "Options other than lstm.py's defaults: %s."
        % (", ".join("`%s`" % d for d in _differs(base)) or "none"),
        "",
        "Errors are shares of misclassified reviews, of each run's best model (lowest "
        "validation error, the one saved); mean ± sample standard deviation over the "
        "seeds that finished ok. Seconds are training time, without loading and "
        "compiling.",
        "",
        "| optimizer | runs ok | best valid error | test error | train error | "
        "updates to best | epochs | seconds | updates/s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ranked = [r for r in rows if r["ok"]]
    best = {}
    if len(ranked) > 1:
        for stat in ("valid_err", "test_err"):
            best[stat] = min(r[stat + "_mean"] for r in ranked)
    for row in rows:
        cells = []
        for stat, fmt in (("valid_err", "%.4f"), ("test_err", "%.4f"), ("train_err", "%.4f"),
                          ("updates_to_best", "%.0f"), ("epochs", "%.1f"),
                          ("seconds", "%.1f"), ("updates_per_s", "%.1f")):
            text = _pm(row[stat + "_mean"], row[stat + "_std"], fmt)
            if row["ok"] and best.get(stat) == row[stat + "_mean"]:
                text = "**%s**" % text
            cells.append(text)
        lines.append("| %s | %d/%d | %s | %s |" % (row["optimizer"], row["ok"], row["runs"],
                                                   " | ".join(cells), row["status"]))
    lines += ["", "![validation and training error against updates and training time]"
                  "(curves.png)", "", "## Runs", "",
              "| run | status | best valid error | test error | train error | "
              "updates to best | epochs | updates | seconds | initial parameters (sha256) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        r = run["result"]
        status = run["status"] + (": " + run["error"] if run["error"] else "")
        if r:
            nums = ["%.4f" % r["valid_err"], "%.4f" % r["test_err"], "%.4f" % r["train_err"],
                    "–" if run["updates_to_best"] is None else str(run["updates_to_best"]),
                    str(r["epochs"]), str(r["updates"]), "%.1f" % r["seconds"]]
        else:
            nums = ["–"] * 7
        digest = (run["init_sha256"] or "–")[:16]
        lines.append("| %s | %s | %s | `%s` |" % (run_name(run["optimizer"], run["seed"]),
                                                  status.replace("|", "/"), " | ".join(nums),
                                                  digest))
    lines += ["", "Each run's model, options, log and checkpoint are in its folder "
                  "(`<optimizer>-seed<seed>/`); `runs.jsonl` has the same rows as JSON.",
              "Written %s." % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())]
    return "\n".join(lines) + "\n"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def runs_jsonl_text(runs):
    return "".join(json.dumps(_json_safe({k: v for k, v in run.items() if k != "curve"}),
                              sort_keys=True) + "\n" for run in runs)


def write_outputs(out_dir, runs, info):
    """Rewrite runs.jsonl, results.csv, results.md and curves.png, each atomically."""
    rows = summarize(runs, info["optimizers"])
    for name, text in (("runs.jsonl", runs_jsonl_text(runs)), ("results.csv", csv_text(rows)),
                       ("results.md", markdown_text(rows, runs, info))):
        data = text.encode("utf-8")
        lstm.atomic_write(os.path.join(out_dir, name), lambda f: f.write(data))
    plot_curves(os.path.join(out_dir, "curves.png"), runs, rows, info)


# ---------------------------------------------------------------------------
# The figure.
# ---------------------------------------------------------------------------
def _common_grid(curves, xkey):
    """Where every curve has data: the shared updates, or a range of seconds."""
    if xkey == "update":
        shared = set.intersection(*({r["update"] for r in c} for c in curves))
        return np.array(sorted(shared), dtype=float)
    start = max(c[0]["seconds"] for c in curves)
    stop = min(c[-1]["seconds"] for c in curves)
    return np.linspace(start, stop, 400) if start < stop else np.zeros(0)


def _aggregate(curves, key, xkey, grid):
    """Mean, min and max over ``curves`` of ``key``, interpolated on ``grid``."""
    ys = np.array([np.interp(grid, [r[xkey] for r in c], [r[key] for r in c])
                   for c in curves])
    return ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def _time_unit(max_seconds):
    if max_seconds < 300:
        return 1.0, "s"
    if max_seconds < 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def plot_curves(path, runs, rows, info):
    """Validation and training error against updates and against training time."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        print("%s: matplotlib is not installed: %s not drawn (pip install -r "
              "requirements.txt)" % (PROG, path), file=sys.stderr)
        return
    all_seconds = [r["seconds"] for run in runs for r in run["curve"]]
    scale, unit = _time_unit(max(all_seconds, default=0.0))
    fig = Figure(figsize=(13, 8.5), dpi=100)
    axes = fig.subplots(2, 2, sharey="row")
    panels = [(0, "valid_err", "validation error"), (1, "train_err", "training error")]
    by_name = {row["optimizer"]: row for row in rows}
    handles = []
    top = 0.0
    for name in info["optimizers"]:
        color, style = COLORS.get(name), STYLES.get(name, "-")
        mine = [r for r in runs if r["optimizer"] == name and r["curve"]]
        ok = [r["curve"] for r in mine if r["status"] == "ok"]
        partial = [r for r in mine if r["status"] != "ok"]
        row = by_name[name]
        label = "%s: %d/%d runs ok" % (name, row["ok"], row["runs"])
        if row["ok"]:
            label += ", best valid %s" % _pm(row["valid_err_mean"], row["valid_err_std"],
                                             "%.3f")
        if row["status"] not in ("ok", "not run"):
            label += " — " + row["status"]
        handles.append(Line2D([], [], color=color, ls=style, lw=2.5, label=label))
        for line, key, _ in panels:
            for col, xkey in ((0, "update"), (1, "seconds")):
                ax = axes[line][col]
                div = 1.0 if xkey == "update" else scale
                if len(ok) > 1:  # each seed thin, then mean and band where all run
                    for curve in ok:
                        ax.plot(np.array([r[xkey] for r in curve], dtype=float) / div,
                                [r[key] for r in curve], color=color, lw=0.8, alpha=0.45,
                                ls=style)
                    grid = _common_grid(ok, xkey)
                    if grid.size:
                        mean, lo, hi = _aggregate(ok, key, xkey, grid)
                        ax.plot(grid / div, mean, color=color, lw=2.2, ls=style)
                        ax.fill_between(grid / div, lo, hi, color=color, alpha=0.18, lw=0)
                elif ok:
                    x = np.array([r[xkey] for r in ok[0]], dtype=float) / div
                    ax.plot(x, [r[key] for r in ok[0]], color=color, lw=2.2, ls=style,
                            marker="o" if len(x) <= 30 else None, ms=3.5)
                top = max([top] + [r[key] for c in ok for r in c])
                for run in partial:  # failed or interrupted: thin, x where it stopped
                    x = np.array([r[xkey] for r in run["curve"]], dtype=float) / div
                    y = np.array([r[key] for r in run["curve"]], dtype=float)
                    ax.plot(x, y, color=color, lw=1.2, ls=style, alpha=0.8)
                    ax.plot(x[-1:], y[-1:], color=color, marker="x", ms=8, mew=2)
                    top = max(top, float(np.nanmax(y)))
    for line, key, ylabel in panels:
        axes[line][0].set_ylabel("%s (share misclassified)" % ylabel, fontsize=11)
        for col in (0, 1):
            ax = axes[line][col]
            ax.grid(True, alpha=0.3)
            ax.set_ylim(0.0, min(1.0, top * 1.08 + 0.02) if top > 0 else 1.0)
            ax.tick_params(labelsize=10)
            ax.set_title("%s against %s" % (ylabel.capitalize(),
                                            "updates" if col == 0 else "training time"),
                         fontsize=12)
            if not all_seconds:
                ax.text(0.5, 0.5, "no validation yet", ha="center", va="center",
                        transform=ax.transAxes, fontsize=12, color="0.4")
        axes[line][0].set_xlabel("updates (minibatches of %d reviews)"
                                 % info["base"].batch_size, fontsize=11)
        axes[line][1].set_xlabel("training time (%s, without compiling)" % unit, fontsize=11)
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
    lstm.atomic_write(path, lambda f: fig.savefig(f, format="png"))


# ---------------------------------------------------------------------------
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, base = parse_args(argv)
    args.argv = argv
    err = sys.stderr
    try:
        return compare(args, base, err)
    except KeyboardInterrupt:  # before the first run (building the dataset)
        print("%s: interrupted" % PROG, file=err)
        return 130
    except DataError as exc:
        if args.debug:
            raise
        print("%s: error: %s" % (PROG, str(exc).splitlines()[0]), file=err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
