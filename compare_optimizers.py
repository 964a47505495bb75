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
import dataclasses
import io
import os
import shlex
import sys
import time

import lstm  # first: sets PyTensor's flags
from sentiment.cli import add_config_args, add_training_args, parse_with_config
from sentiment.config import OPTIMIZERS, TUTORIAL_OPTIMIZERS, Config
from sentiment.errors import DataError, report
from sentiment.plotting import plot_curves
from sentiment.reporting import (MISSING, MODEL_FILE, csv_text, duration, format_mean_std,
                                 jsonl_text, markdown_table, mean_std, open_run_log,
                                 run_name, train_run, write_texts)

PROG = "compare_optimizers.py"
DEFAULT_SEEDS = (123, 124, 125)
DEFAULT_OUT = os.path.join("runs", "compare")
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
    defaults = Config()
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
    add_config_args(p)
    add_training_args(p, exclude=("optimizer", "seed", "saveto", "max_epochs"),
                      title="training options (lstm.py's own flags, the same for every run)")
    a = p.add_argument
    a("-h", "--help", action="help", help="show this help message and exit")  # not lstm.py's
    a("--optimizers", nargs="+", choices=OPTIMIZERS,
      default=list(TUTORIAL_OPTIMIZERS), metavar="NAME",
      help="optimizers to compare, among %s (the tutorial's rules: adadelta and "
           "rmsprop ignore --lrate; sgd and adam use it)" % ", ".join(OPTIMIZERS))
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
        args = parse_with_config(parser, argv)
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
        base = Config.from_dict(dict(values, optimizer=args.optimizers[0],
                                     seed=args.seeds[0], saveto="")).validate()
    except ValueError as exc:
        parser.error(str(exc))
    # The training-error curves need the train split at each validation.
    base = dataclasses.replace(base, monitor=",".join(
        ["train"] + [m for m in base.monitored() if m != "train"]))
    return args, base


# ---------------------------------------------------------------------------
# Progress on standard error.
# ---------------------------------------------------------------------------
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
                      valid, self.best[0], self.best[1], duration(run_left),
                      duration(run_left + later)))

    def finish(self, run):
        self.walls.append(time.time() - self.t0)
        r = run.get("result")
        if run["status"] == "ok":
            text = ("ok: best valid err %.4f at update %s, test err %.4f, %d epochs, %s"
                    % (r["valid_err"], run["updates_to_best"], r["test_err"], r["epochs"],
                       duration(r["seconds"])))
        else:
            text = FAILURE_TEXT.get(run["status"], run["status"])
            if run.get("error"):
                text += ": " + run["error"]
            if r:
                text += " after %d updates" % r["updates"]
        self._emit("%s: %s (%s with compiling; log: %s)"
                   % (self.prefix, text, duration(self.walls[-1]), run["log"]), final=True)

    def note(self, text):
        if self.open:
            self.stream.write("\n")
            self.open = False
        self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------
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
    run = dict(optimizer=optimizer, seed=seed, status=None, error=None, result=None,
               init_sha256=None, updates_to_best=None, seconds_to_best=None,
               epoch_of_best=None, model=options.saveto)
    curve = []

    def callback(record):
        curve.append(dict(record))
        progress.validation(record)

    # A run folder holds one run: no model or checkpoint left from an earlier one.
    with open_run_log(options.saveto) as log:
        run["log"] = log.name
        status, result, error = train_run(lstm.train_lstm, options, log, source=source,
                                          callback=callback)
    run.update(status=status, result=result, error=error)
    if result is not None:
        run["init_sha256"] = result["init_sha256"]
        best = [r for r in curve if r["best"]]
        if best:  # the last record marked best is the model that was saved
            run.update(updates_to_best=best[-1]["update"],
                       seconds_to_best=best[-1]["seconds"], epoch_of_best=best[-1]["epoch"])
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
            row[stat + "_mean"], row[stat + "_std"] = mean_std(m[stat] for m in metrics)
        rows.append(row)
    return rows


def _differs(base):
    """``name=value`` of the options that differ from lstm.py's defaults."""
    defaults = Config()
    return ["%s=%s" % (f.name, getattr(base, f.name)) for f in dataclasses.fields(base)
            if f.name not in ("optimizer", "seed", "saveto", "ydim")
            and getattr(base, f.name) != getattr(defaults, f.name)]


def _markdown_intro(runs, info):
    """The title, the command, what was run and how to read the tables."""
    base, (n_train, n_valid, n_test) = info["base"], info["sizes"]
    finished = sum(r["status"] != "interrupted" for r in runs)
    return [
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
    ]


# The summary table's statistics, as (stat, format) in column order.
SUMMARY_STATS = (("valid_err", "%.4f"), ("test_err", "%.4f"), ("train_err", "%.4f"),
                 ("updates_to_best", "%.0f"), ("epochs", "%.1f"), ("seconds", "%.1f"),
                 ("updates_per_s", "%.1f"))


def _summary_table(rows):
    """One line per optimizer; the lowest mean errors in bold when several ran."""
    ranked = [r for r in rows if r["ok"]]
    best = {}
    if len(ranked) > 1:
        for stat in ("valid_err", "test_err"):
            best[stat] = min(r[stat + "_mean"] for r in ranked)
    table = []
    for row in rows:
        cells = []
        for stat, fmt in SUMMARY_STATS:
            text = format_mean_std(row[stat + "_mean"], row[stat + "_std"], fmt)
            if row["ok"] and best.get(stat) == row[stat + "_mean"]:
                text = "**%s**" % text
            cells.append(text)
        table.append([row["optimizer"], "%d/%d" % (row["ok"], row["runs"])] + cells
                     + [row["status"]])
    return markdown_table(["optimizer", "runs ok", "best valid error", "test error",
                           "train error", "updates to best", "epochs", "seconds",
                           "updates/s", "status"], table)


def _runs_table(runs):
    """One line per run: its status, errors, updates, time and initial parameters."""
    table = []
    for run in runs:
        r = run["result"]
        status = run["status"] + (": " + run["error"] if run["error"] else "")
        if r:
            nums = ["%.4f" % r["valid_err"], "%.4f" % r["test_err"], "%.4f" % r["train_err"],
                    MISSING if run["updates_to_best"] is None else str(run["updates_to_best"]),
                    str(r["epochs"]), str(r["updates"]), "%.1f" % r["seconds"]]
        else:
            nums = [MISSING] * 7
        digest = (run["init_sha256"] or MISSING)[:16]
        table.append([run_name(run["optimizer"], run["seed"]), status.replace("|", "/")]
                     + nums + ["`%s`" % digest])
    return markdown_table(["run", "status", "best valid error", "test error", "train error",
                           "updates to best", "epochs", "updates", "seconds",
                           "initial parameters (sha256)"], table)


def markdown_text(rows, runs, info):
    """results.md: what was run, the summary per optimizer, the figure, each run."""
    lines = (_markdown_intro(runs, info) + _summary_table(rows)
             + ["", "![validation and training error against updates and training time]"
                    "(curves.png)", "", "## Runs", ""]
             + _runs_table(runs)
             + ["", "Each run's model, options, log and checkpoint are in its folder "
                    "(`<optimizer>-seed<seed>/`); `runs.jsonl` has the same rows as JSON.",
                "Written %s." % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())])
    return "\n".join(lines) + "\n"


def write_outputs(out_dir, runs, info):
    """Rewrite runs.jsonl, results.csv, results.md and curves.png, each atomically."""
    rows = summarize(runs, info["optimizers"])
    write_texts(out_dir, {"runs.jsonl": jsonl_text(runs, drop=("curve",)),
                          "results.csv": csv_text(CSV_COLUMNS, rows),
                          "results.md": markdown_text(rows, runs, info)})
    path = os.path.join(out_dir, "curves.png")
    if not plot_curves(path, runs, rows, info):
        print("%s: matplotlib is not installed: %s not drawn (pip install -r "
              "requirements.txt)" % (PROG, path), file=sys.stderr)


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
        return report(PROG, exc, file=err)


if __name__ == "__main__":
    sys.exit(main())
