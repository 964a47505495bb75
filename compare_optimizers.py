"""Compare optimizers on the tutorial's LSTM in one command: plainly, or each at
its best learning rate (``--tune``), with confidence intervals and paired tests.

``python compare_optimizers.py`` trains the LSTM of ``lstm.py`` once per
optimizer and seed (the tutorial's AdaDelta, RMSProp and SGD by default).
Within a seed every run starts from the same initial parameters, on the same
train/valid/test split, and sees the same minibatch order:
``lstm.make_rngs(seed)`` gives one independent stream per purpose, and none
depends on the optimizer. Only the update rule differs.

``--tune`` first runs each optimizer at a grid of learning rates (``--lrates``,
defaults in :mod:`sentiment.experiments.tuning`) on ``--tune-seeds``, chooses each one's
rate on the validation split only, then runs the chosen rates over ``--seeds``.
``--jobs N`` runs N runs at once on this machine and ``--cluster ADDRESS`` on
a running Dask cluster (:mod:`sentiment.experiments.parallel`); a run gives the same
results wherever it ran. Runs that finished are kept in ``--out``: the same
command started again runs only the others.

It writes to ``--out`` (default ``runs/compare``), rewritten (atomically) after
every run:

- ``results.md`` / ``results.csv``: per optimizer, its learning rate, mean and
  sample standard deviation over the seeds of the best validation error, the
  test error (with a 95 % confidence interval) and training error of that
  model, updates and seconds to a target validation error, updates to the
  best validation, epochs, seconds; failed runs counted as such;
- ``pairs.csv`` (and a table in results.md): paired comparisons of the test
  error between optimizers over seeds (t-test with Holm's correction,
  Wilcoxon);
- ``curves.png``: validation and training error against updates and time;
  ``tuning.png``: validation error against the learning rate (``--tune``);
- ``runs.jsonl``: one JSON object per run (its options' digest, result,
  initial and final parameters' digests, validation curve), and the runs
  an earlier command finished in ``--out`` that this one did not use;
- ``<run>/``: what ``lstm.py`` writes for the run and ``train.log``.

Ctrl-C keeps what finished (the run in progress saves its best model and
checkpoint) and exits with 130. Exit codes: 0 when at least one run finished
ok, 1 when every run failed, 2 on a usage or data error, 130 after Ctrl-C.
"""
import argparse
import dataclasses
import io
import os
import shlex
import sys
import time

import lstm  # first: sets PyTensor's flags
from sentiment.model.cli import add_config_args, add_training_args, parse_with_config
from sentiment.experiments.compare_report import (CSV_COLUMNS, FAILURE_TEXT, PAIR_COLUMNS, markdown_text,
                                      paired_rows, summarize)
from sentiment.experiments.comparison import kept_runs, options_digest, run_folder, run_task
from sentiment.model.config import OPTIMIZERS, TUTORIAL_OPTIMIZERS, Config
from sentiment.common.errors import DataError, report
from sentiment.kernels.machine import cpu_info
from sentiment.experiments.parallel import pool, run_all, threads_per_run
from sentiment.experiments.plotting import plot_curves, plot_tuning
from sentiment.experiments.reporting import (MODEL_FILE, csv_text, duration, jsonl_text, run_name,
                                 write_texts)
from sentiment.experiments.tuning import DEFAULT_GRIDS, grids_for, parse_lrates, rate_text, select, with_lrate
from sentiment.common.wording import plural

PROG = "compare_optimizers.py"
DEFAULT_SEEDS = (123, 124, 125)
DEFAULT_OUT = os.path.join("runs", "compare")
__all__ = ["CSV_COLUMNS", "build_parser", "main", "parse_args", "run_name"]


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


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more, not %d" % value)
    return value


def _grids_help():
    return "; ".join("%s %s" % (name, ",".join(map(rate_text, grid)))
                     for name, grid in DEFAULT_GRIDS.items())


def add_comparison_args(p):
    """This script's own flags (the optimizers, seeds, tuning, where runs go)."""
    a = p.add_argument
    a("-h", "--help", action="help", help="show this help message and exit")  # not lstm.py's
    a("--optimizers", nargs="+", choices=OPTIMIZERS,
      default=list(TUTORIAL_OPTIMIZERS), metavar="NAME",
      help="optimizers to compare, among %s (the tutorial's three by default; adadelta "
           "and rmsprop ignore --lrate, see lstm.py --adaptive-lrate)" % ", ".join(OPTIMIZERS))
    a("--seeds", nargs="+", type=_seed, default=list(DEFAULT_SEEDS), metavar="N",
      help="one run per optimizer and seed; a seed fixes the initial parameters, the "
           "split, the test subset, the minibatch order and dropout")
    a("--max-epochs", type=int, default=Config().max_epochs,
      help="maximum number of passes over the training set, per run (early stopping "
           "may end a run sooner)")
    a("--out", default=DEFAULT_OUT, metavar="DIR",
      help="folder for the tables, the figures and one sub-folder per run")
    a("--tune", action="store_true",
      help="give each optimizer its best learning rate first: run a grid of rates "
           "(--lrates) on --tune-seeds, choose each optimizer's on the validation split "
           "only, then run the chosen rates over --seeds")
    a("--lrates", nargs="+", default=[], metavar="NAME=R,R",
      help="learning-rate grids for --tune (implies it), e.g. sgd=0.01,0.1,1 "
           "adam=1e-4,3e-4,1e-3; adadelta's rate is a factor on its step (the tutorial: "
           "1), rmsprop's its step (the tutorial: 1e-4). Defaults: %s" % _grids_help())
    a("--tune-seeds", nargs="+", type=_seed, metavar="N",
      help="seeds of the tuning runs (default: the first of --seeds; those runs at the "
           "chosen rate are not run twice)")
    a("--target-valid", type=float, metavar="ERR",
      help="report the updates and seconds each run took to first reach this validation "
           "error (default: the highest of the optimizers' mean best validation errors, "
           "a level all of them reach on average)")
    a("--jobs", type=_positive, default=1, metavar="N",
      help="runs at once on this machine, as Dask worker processes sharing the cores "
           "(a run's results are the same alone or beside others)")
    a("--cluster", metavar="ADDRESS",
      help="send the runs to the running Dask scheduler at ADDRESS (e.g. "
           "tcp://10.0.0.5:8786) instead; see the README for starting workers")
    a("--restart", action="store_true",
      help="run every run again (by default the runs that finished in --out with the "
           "same options are kept and not run again)")
    a("--debug", action="store_true", help="show tracebacks on errors")


def build_parser():
    """This script's flags, then every ``lstm.py`` training flag (passed through).

    ``--optimizer``, ``--seed``, ``--saveto`` and ``--resume`` are refused
    with a message naming what to use instead.
    """
    p = argparse.ArgumentParser(
        prog=PROG, add_help=False,
        usage="%(prog)s [--optimizers NAME [NAME ...]] [--seeds N [N ...]] [--tune] "
              "[--lrates NAME=R,R ...] [--jobs N | --cluster ADDRESS] [--out DIR] "
              "[training options] [-h]",
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train lstm.py's sentiment LSTM with each optimizer and seed, "
                    "every run of a seed from the same initial parameters, data split "
                    "and minibatch order, and compare them (--tune: each at its best "
                    "learning rate on the validation split): results.md, results.csv, "
                    "pairs.csv and curves.png in --out, rewritten after each run.",
        epilog="Each run saves its model, options, JSON log, checkpoint and the "
               "tutorial's output (train.log) in OUT/<run>/; OUT/runs.jsonl has one line "
               "per finished run. Progress goes to standard error. Exit code: 0 if at "
               "least one run finished ok, 1 if all failed, 2 on a usage or data error, "
               "130 after Ctrl-C (the runs finished so far stay, and the same command "
               "continues from them).")
    p._optionals.title = "comparison options"
    add_config_args(p)
    add_training_args(p, exclude=("optimizer", "seed", "saveto", "max_epochs"),
                      title="training options (lstm.py's own flags, the same for every run)")
    add_comparison_args(p)
    # Only the curves' train split is evaluated at each validation (lstm.py: train,test):
    # the test split is evaluated once, at the end of each run.
    p.set_defaults(monitor="train")
    for flag, instead in (
            ("--optimizer", "choose the optimizers with --optimizers NAME [NAME ...]"),
            ("--seed", "choose the seeds with --seeds N [N ...]"),
            ("--saveto", "each run saves to OUT/<run>/%s; choose OUT with --out"
                         % MODEL_FILE),
            ("--resume", "a comparison keeps its finished runs by itself; continue one "
                         "run with python lstm.py --resume OUT/<run>/lstm_model.ckpt.npz"),
            ("--summary", "print a model's summary with python lstm.py --summary")):
        p.add_argument(flag, action=_Rejected, instead=instead)
    return p


def _check_tuning(parser, args):
    """Parse ``--lrates``; ``--tune`` follows from it."""
    try:
        args.grids = parse_lrates(args.lrates)
    except ValueError as exc:
        parser.error("--lrates %s" % exc)
    extra = sorted(set(args.grids) - set(args.optimizers))
    if extra:
        parser.error("--lrates gives rates for %s, which --optimizers does not compare"
                     % ", ".join(extra))
    args.tune = args.tune or bool(args.grids)
    args.grids = grids_for(args.optimizers, args.grids) if args.tune else None
    args.tune_seeds = list(dict.fromkeys(args.tune_seeds or args.seeds[:1]))
    if args.jobs > 1 and args.cluster:
        parser.error("--jobs and --cluster: choose one (the cluster's workers set how "
                     "many runs go at once)")


def parse_args(argv=None):
    """``(args, base)``: the parsed flags and the Config common to every run."""
    parser = build_parser()
    try:
        args = parse_with_config(parser, argv)
    except DataError as exc:
        parser.error(str(exc))
    args.optimizers = list(dict.fromkeys(args.optimizers))  # drop repeats, keep order
    args.seeds = list(dict.fromkeys(args.seeds))
    _check_tuning(parser, args)
    values = vars(args).copy()
    for own in ("optimizers", "seeds", "out", "debug", "source", "preset", "config", "tune",
                "lrates", "grids", "tune_seeds", "target_valid", "jobs", "cluster",
                "restart"):
        values.pop(own)
    for key in ("optimizer", "seed", "saveto"):  # from a preset: chosen per run here
        values.pop(key, None)
    try:
        base = Config.from_dict(dict(values, optimizer=args.optimizers[0],
                                     seed=args.seeds[0], saveto=""))
        for name in args.optimizers:  # each run's options (e.g. --weight-decay with sgd)
            with_lrate(base, name, None).validate()
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
    """A line per run started and finished; in this process, one per validation too
    (rewritten in place on a terminal)."""

    def __init__(self, stream, updates_per_epoch, max_epochs):
        self.stream = stream
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.max_updates = max(1, updates_per_epoch * max(max_epochs, 0))
        self.max_epochs = max_epochs
        self.open = False

    def _emit(self, text, final=False):
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
            self.open = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def phase(self, labels):
        """Start a batch of runs named ``labels``."""
        self.labels, self.t0, self.walls, self.best = labels, {}, [], None
        self.current = None

    def _prefix(self, index):
        return "[%d/%d] %s" % (index + 1, len(self.labels), self.labels[index])

    def start(self, index, sent=False):
        """Run ``index`` starts here, or (``sent``) was sent to a worker."""
        self.t0[index], self.current, self.best, self.sent = time.time(), index, None, sent
        self._emit("%s: %s" % (self._prefix(index), "sent to a worker" if sent else
                               "building and compiling the model..."), final=sent)

    def validation(self, record):
        valid = record["valid_err"]
        if self.best is None or valid <= self.best[0]:
            self.best = (valid, record["update"])
        per_update = record["seconds"] / max(record["update"], 1)
        run_left = max(self.max_updates - record["update"], 0) * per_update
        setup = (time.time() - self.t0[self.current]) - record["seconds"]
        later = (len(self.labels) - self.current - 1) * (setup + self.max_updates * per_update)
        self._emit("%s: epoch %d/%d, update %d, valid err %.4f, best %.4f (update %d), "
                   "ETA <= %s (all runs <= %s)"
                   % (self._prefix(self.current), record["epoch"] + 1, self.max_epochs,
                      record["update"], valid, self.best[0], self.best[1],
                      duration(run_left), duration(run_left + later)))

    def finish(self, index, run):
        self.walls.append(time.time() - self.t0[index])
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
        self._emit("%s: %s (%s %s; log: %s)"
                   % (self._prefix(index), text, duration(self.walls[-1]),
                      "since sent" if self.sent else "with compiling", run["log"]),
                   final=True)

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


def plan(base, seeds, rates, tuned):
    """``[(folder, label, options)]``: a run per seed and optimizer (seed first),
    at each of ``rates[optimizer]`` (a list; None: the options' own rate)."""
    specs = []
    for seed in seeds:
        for name, lrates in rates.items():
            for lrate in lrates:
                options = dataclasses.replace(with_lrate(base, name, lrate), seed=seed)
                shown = options.optimizer_lrate()
                folder = run_folder(name, seed, shown if tuned else None)
                label = ("%s lr %s seed %d" % (name, rate_text(shown), seed) if tuned
                         else "%s seed %d" % (name, seed))
                specs.append((folder, label, options))
    return specs


class _Stopped(Exception):
    """A run stopped on Ctrl-C: the comparison stops after it."""


class Comparison:
    """The runs of one command (kept from an earlier start, or run now) and its files."""

    def __init__(self, args, base, sizes, err):
        self.args, self.base, self.sizes = args, base, sizes
        self.out = args.out
        self.progress = Progress(err, -(-sizes[0] // base.batch_size), base.max_epochs)
        self.runs, self.tuning, self.final, self.kept = [], None, set(), 0
        self.order = {}  # options digest -> place in the plan: the order of the tables
        # Runs an earlier start finished here: used where this command plans the same
        # run; the others stay in runs.jsonl for a later start.
        self.earlier = {} if args.restart else kept_runs(os.path.join(self.out, "runs.jsonl"))
        self.t0 = time.time()

    def run(self, specs, client):
        """Run the ``specs`` not run yet (kept ones are reused); return their records."""
        wanted = {options_digest(o): (f, l, o) for f, l, o in specs}
        for digest in wanted:
            self.order.setdefault(digest, len(self.order))
        have = {r["options_sha256"]: r for r in self.runs}
        reused = len(set(wanted) & set(have))
        kept = {d: self.earlier.pop(d) for d in wanted if d not in have and d in self.earlier}
        self.runs += kept.values()
        self.runs.sort(key=lambda r: self.order[r["options_sha256"]])
        have.update(kept)
        self.kept += len(kept)
        todo = [wanted[d] for d in wanted if d not in have]
        self.progress.phase([label for _, label, _ in todo])
        if kept:
            self.progress.note("%s: %d of %d runs finished in %s by an earlier start: kept"
                               % (PROG, len(kept), len(wanted), self.out))
        if reused:
            self.progress.note("%s: %d of %d runs were run in tuning: reused"
                               % (PROG, reused, len(wanted)))
        calls = [(run_task, (lstm.train_lstm, options, os.path.join(self.out, folder),
                             self.args.source,
                             self.progress.validation if client is None else None))
                 for folder, _, options in todo]
        run_all(client, calls, lambda i: self.progress.start(i, client is not None),
                self._done)
        by_digest = {r["options_sha256"]: r for r in self.runs}
        return [by_digest[d] for d in wanted if d in by_digest]

    def _done(self, index, run):
        self.runs.append(run)
        self.runs.sort(key=lambda r: self.order[r["options_sha256"]])
        self.progress.finish(index, run)
        self.write()
        if run["status"] == "interrupted":  # lstm.train_lstm stopped it on Ctrl-C
            raise _Stopped()

    def write(self):
        """Rewrite runs.jsonl, the tables and the figures, each atomically."""
        final = [r for r in self.runs if not self.args.tune
                 or r["options_sha256"] in self.final]
        rows = summarize(final, self.args.optimizers, self.args.target_valid)
        pairs = paired_rows(final, self.args.optimizers)
        info = self.info()
        write_texts(self.out, {
            "runs.jsonl": jsonl_text(self.runs + list(self.earlier.values())),
            "results.csv": csv_text(CSV_COLUMNS, rows),
            "pairs.csv": csv_text(PAIR_COLUMNS, pairs),
            "results.md": markdown_text(rows, pairs, self.runs, info, self.tuning)})
        drawn = plot_curves(os.path.join(self.out, "curves.png"), final, rows, info)
        if self.tuning:
            drawn = plot_tuning(os.path.join(self.out, "tuning.png"), self.tuning) and drawn
        if not drawn:
            self.progress.note("%s: matplotlib is not installed: figures not drawn (pip "
                               "install -r requirements.txt)" % PROG)

    def info(self):
        args = self.args
        if args.cluster:
            where = "the Dask cluster at %s" % args.cluster
        else:
            cpu = cpu_info()
            where = "%s, %d cores, %s" % (
                cpu["model"], cpu["cores"], "one run at a time" if args.jobs == 1 else
                "%d runs at once (Dask worker processes, %s each)"
                % (args.jobs, plural(threads_per_run(args.jobs), "thread")))
        return dict(command=" ".join(["python", PROG] + [shlex.quote(a) for a in args.argv]),
                    sizes=self.sizes, base=self.base, optimizers=args.optimizers,
                    seeds=args.seeds, planned=len(self.order), kept=self.kept,
                    wall=duration(time.time() - self.t0), where=where)


def run_comparison(comparison, client):
    """The plain comparison, or the tuning runs, the choice, then the final runs."""
    args, base = comparison.args, comparison.base
    if not args.tune:
        rates = {name: [None] for name in args.optimizers}
        comparison.run(plan(base, args.seeds, rates, False), client)
        return
    comparison.progress.note("%s: tuning: %s on seeds %s" % (
        PROG, "; ".join("%s %s" % (n, ",".join(map(rate_text, g)))
                        for n, g in args.grids.items()),
        " ".join(map(str, args.tune_seeds))))
    tuned = comparison.run(plan(base, args.tune_seeds, args.grids, True), client)
    choices = select(tuned, args.grids)
    comparison.tuning = dict(choices=choices, seeds=args.tune_seeds)
    chosen = {n: [c["lrate"]] for n, c in choices.items() if c["lrate"] is not None}
    comparison.progress.note("%s: chosen on validation: %s" % (PROG, ", ".join(
        "%s %s" % (n, rate_text(r[0])) for n, r in chosen.items()) or "none"))
    specs = plan(base, args.seeds, chosen, True)
    comparison.final = {options_digest(o) for _, _, o in specs}  # what the summary is about
    comparison.run(specs, client)


def compare(args, base, err):
    """Run the comparison; write the outputs after each run; the exit code."""
    sizes = data_sizes(base, args.source)
    comparison = Comparison(args, base, sizes, err)
    comparison.progress.note(
        "%s: %s x seeds %s%s on %s: %d train / %d valid / %d test reviews, %d updates an "
        "epoch, at most %d epochs; writing to %s"
        % (PROG, " ".join(args.optimizers), " ".join(map(str, args.seeds)),
           " (tuned)" if args.tune else "", base.dataset, sizes[0], sizes[1], sizes[2],
           -(-sizes[0] // base.batch_size), base.max_epochs, args.out))
    interrupted = False
    try:
        with pool(args.jobs, args.cluster) as client:
            run_comparison(comparison, client)
    except (KeyboardInterrupt, _Stopped):
        interrupted = True
    finally:
        if comparison.runs:
            comparison.write()
    if interrupted:
        comparison.progress.note(
            "%s: interrupted after %d of %d runs; the finished ones are in %s (the same "
            "command continues from them)"
            % (PROG, sum(r["status"] != "interrupted" for r in comparison.runs),
               len(comparison.order), os.path.join(args.out, "results.md")))
        return 130
    n_ok = sum(r["status"] == "ok" for r in comparison.runs)
    comparison.progress.note("%s: %d of %d runs ok; tables: %s, %s; curves: %s"
                             % (PROG, n_ok, len(comparison.runs),
                                os.path.join(args.out, "results.md"),
                                os.path.join(args.out, "results.csv"),
                                os.path.join(args.out, "curves.png")))
    return 0 if n_ok else 1


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
