"""Regenerate the README's results, with the machine beside every figure.

    python reproduce.py                 # quick: the tutorial's run over 5 seeds (~15-30 min)
    python reproduce.py --level full    # also keras-imdb, and --preset full over 3 seeds
                                        # with their ensemble (~2 h on 2 cores)

Each run is ``lstm.py``'s training with one seed (the tutorial's options, or
``--preset full``), then its saved model evaluated on all 25,000 test reviews.
The results go to ``runs/reproduce/results.jsonl`` (finished runs are kept:
an interrupted command goes on where it stopped) and ``docs/reproduce.md``:
the environment (CPU model and vector extensions, cores, threads, package
versions, commit), each run's errors and parameter digest, and mean ± std
over the seeds. The README's figures are copied from that file.
"""
import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

import lstm
from sentiment.experiments import reporting
from sentiment.model.config import DEFAULT_DATASET, PRESET_DIR, Config, read_config_file
from sentiment.common.errors import DataError, report
from sentiment.kernels.machine import describe

PROG = "reproduce.py"
LEVELS = {"quick": [("tutorial", seed) for seed in (123, 124, 125, 126, 127)],
          "full": [("tutorial", seed) for seed in (123, 124, 125, 126, 127)]
          + [("keras-imdb", 123)] + [("full", seed) for seed in (1, 2, 3)]}
ENSEMBLE = "full"  # at the full level, its seeds' models are also evaluated as one ensemble
PACKAGES = ("pytensor", "numpy", "numba", "scipy", "sacremoses")


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--level", choices=sorted(LEVELS), default="quick",
                   help="quick: the tutorial over 5 seeds; full: also keras-imdb, and "
                        "--preset full over 3 seeds with their ensemble")
    p.add_argument("--out", default=os.path.join("runs", "reproduce"),
                   help="folder of the runs and results.jsonl")
    p.add_argument("--report", default=os.path.join("docs", "reproduce.md"),
                   help="the Markdown report written")
    p.add_argument("--source", default=None, metavar="PATH",
                   help="raw aclImdb folder or .tar.gz to build a missing data/imdb.pkl from "
                        "(default: $IMDB_SOURCE, then data/aclImdb_v1.tar.gz, then download)")
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="the preprocessed corpus")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="other seeds than the level's (the same for every set-up)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="cut every run short (a quick check of this command, not results)")
    return p


def run_options(name, seed, out, dataset):
    """The options of one run: the tutorial's (no preset) or a preset's."""
    values = read_config_file(os.path.join(PRESET_DIR, name + ".json")) if name != "tutorial" \
        else {}
    saveto = os.path.join(out, reporting.run_name(name, seed), reporting.MODEL_FILE)
    return dataclasses.replace(Config(**values), seed=seed, saveto=saveto, dataset=dataset)


def planned_runs(args):
    """``[(set-up, seed), ...]`` of the level, with ``--seeds`` when given."""
    runs = LEVELS[args.level]
    if args.seeds:
        runs = [(name, seed) for name in dict.fromkeys(n for n, _ in runs) for seed in args.seeds]
    return runs


def one_run(name, seed, args):
    """Train one run, then evaluate its model on the whole test split."""
    options = run_options(name, seed, args.out, args.dataset)
    if args.max_epochs is not None:
        options = dataclasses.replace(options, max_epochs=args.max_epochs)
    with reporting.open_run_log(options.saveto) as log:
        status, result, error = reporting.train_run(lstm.train_lstm, options, log,
                                                    source=args.source)
    record = dict(run=name, seed=seed, status=status, error=error, **environment())
    if result is not None:
        record.update(result)
        whole = lstm.evaluate_model(options.saveto)
        record.update(test_err_all=1.0 - whole["accuracy"], n_test_all=whole["n"],
                      dataset_sha256=lstm.load_options(options.saveto).dataset_sha256)
    return record


def ensemble_record(records, args):
    """The ``full`` runs' models evaluated as one ensemble (class probabilities
    averaged) on all the test reviews, or None without two finished runs."""
    runs = [r for r in records if r["run"] == ENSEMBLE and r["status"] == "ok"]
    if len(runs) < 2:
        return None
    models = [run_options(ENSEMBLE, r["seed"], args.out, args.dataset).saveto for r in runs]
    whole = lstm.evaluate_model(models)
    return dict(run=ENSEMBLE + " ensemble", seed=" ".join(str(r["seed"]) for r in runs),
                status="ok", error=None, test_err_all=1.0 - whole["accuracy"],
                n_test_all=whole["n"], **environment())


def environment():
    """What the figures depend on, besides the code and the data."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return dict(machine=describe(), python=platform.python_version(), packages=versions,
                commit=(commit.stdout.strip() or "unknown") + (" (modified)" if dirty.stdout
                                                               else ""))


def summary_rows(records):
    """Per set-up: the runs, and mean ± std (over seeds) of the test errors."""
    rows = []
    for name in dict.fromkeys(r["run"] for r in records):
        done = [r for r in records if r["run"] == name and r["status"] == "ok"]
        for key, count in (("test_err", "n_test"), ("test_err_all", "n_test_all")):
            values = [r[key] for r in done if r.get(key) is not None]
            if values:
                mean, std = reporting.mean_std(values)
                n = "{:,}".format(done[0][count]) if done[0].get(count) else "the"
                what = ("test error, the run's %s test reviews" if key == "test_err"
                        else "test error, all %s test reviews") % n
                rows.append([name, what, str(len(values)),
                             reporting.format_mean_std(mean, std, "%.4f")])
    return rows


def environment_lines(records, env):
    """The environment the runs were made in (each record keeps its own; ``env``
    for records made before they did)."""
    def values(key, show):
        return "; ".join(dict.fromkeys(show(r.get(key, env[key])) for r in records)) or show(
            env[key])
    return ["- Machine: %s" % values("machine", str),
            "- Python %s; %s" % (values("python", str), values("packages", lambda p: ", ".join(
                "%s %s" % kv for kv in p.items()))),
            "- Commit: %s" % values("commit", str)]


def report_text(records, env):
    """docs/reproduce.md: the environment, the summary, every run."""
    lines = ["# Reproduced results", "",
             "Made by `python reproduce.py` (see its `--help`); the README's figures are copied "
             "from here.", ""] + environment_lines(records, env) + [""]
    lines += ["## Mean ± std over seeds", ""]
    lines += reporting.markdown_table(["set-up", "figure", "seeds", "mean ± std"],
                                      summary_rows(records))
    lines += ["", "## Every run", ""]
    header = ["set-up", "seed", "epochs", "train err", "valid err", "test err",
              "test err (25,000)", "seconds", "parameter digest (SHA-256)"]
    rows = [[r["run"], str(r["seed"]), str(r.get("epochs", "")),
             *("%.4f" % r[k] if r.get(k) is not None else reporting.MISSING
               for k in ("train_err", "valid_err", "test_err", "test_err_all")),
             "%.0f" % r["seconds"] if "seconds" in r else reporting.MISSING,
             "`%s`" % r["params_sha256"] if r.get("params_sha256") else r.get("error") or
             reporting.MISSING]
            for r in records]
    lines += reporting.markdown_table(header, rows)
    shas = sorted({r.get("dataset_sha256") for r in records if r.get("dataset_sha256")})
    lines += ["", "Dataset (`data/imdb.pkl`) SHA-256: %s." % ", ".join("`%s`" % s for s in shas)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    results = os.path.join(args.out, "results.jsonl")
    start = time.time()
    try:
        records = reporting.read_jsonl(results) if os.path.exists(results) else []
        done = {(r["run"], r["seed"]) for r in records if r["status"] == "ok"}
        records = [r for r in records if (r["run"], r["seed"]) in done]
        for name, seed in planned_runs(args):
            if (name, seed) in done:
                print("%s seed %d: done before, kept" % (name, seed))
                continue
            print("%s seed %d: training (log: %s)" % (name, seed, os.path.join(
                args.out, reporting.run_name(name, seed), reporting.LOG_FILE)), flush=True)
            records.append(one_run(name, seed, args))
            reporting.write_text(results, reporting.jsonl_text(records, drop=("history_errs",)))
            reporting.write_text(args.report, report_text(records, environment()))
        if args.level == "full" and not any(r["run"] == ENSEMBLE + " ensemble" for r in records):
            ensemble = ensemble_record(records, args)
            if ensemble is not None:
                records.append(ensemble)
                reporting.write_text(results, reporting.jsonl_text(records))
        reporting.write_text(args.report, report_text(records, environment()))
    except DataError as exc:
        return report(PROG, exc)
    print("wrote %s and %s in %s" % (results, args.report, reporting.duration(time.time() - start)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
