"""Train each preset and model variant once on IMDB and tabulate the results.

``python run_variants.py`` trains, one after the other, the runs named in
:data:`RUNS` (or those given with ``--runs``): each preset as it is
(``tutorial``, ``keras-imdb`` and its CNN, stacked and bidirectional
versions, ``full``: the full-data run of the README's "Results on the full
test set", and ``full-adv``, the same with adversarial training), and each variant of ``lstm.py``
(stacked, bidirectional, convolution + pooling, last/max pooling, a separate
embedding size, 1 to 32 hidden units) on the tutorial's set-up with
``--max-epochs 30``, and the tutorial itself so capped (``tutorial-30``). It writes to
``--out`` (default ``runs/variants``):

- ``results.md`` / ``results.csv``: per run, its options (as ``lstm.py`` flags),
  parameters, epochs, seconds per epoch, the best model's train/valid/test
  error and the number of test reviews;
- ``runs.jsonl``: one JSON object per run (its options, ``train_lstm``'s result);
- ``<run>/``: what ``lstm.py`` writes (model, ``.json`` options, ``.log.jsonl``)
  and ``train.log``.

The outputs are rewritten after every run, keeping the runs of earlier (or
concurrent) invocations in the same ``--out`` (a run trained again replaces its
record); Ctrl-C stops after the current run's clean stop. ``--seeds 1 2 3``
repeats every run per seed (the tables then give mean ± std); with
``--ensemble``, each run's finished seeds are then also evaluated as one
ensemble (their class probabilities averaged, as
``lstm.py evaluate --model A B C``) on every review of the test split, and the
result is written to ``ensembles.jsonl``. What this script shares with
``compare_optimizers.py`` (run folders, tables, JSON lines) is in
``sentiment/experiments/reporting.py``.
"""
import argparse
import dataclasses
import os
import sys
import time

import numpy as np

import lstm  # first: sets PyTensor's flags
from sentiment.model.config import DEFAULT_DATASET, PRESET_DIR, Config, read_config_file
from sentiment.common.errors import DataError, report
from sentiment.experiments.reporting import (MODEL_FILE, csv_text, format_mean_std, jsonl_text,
                                 markdown_table, mean_std, open_run_log, read_jsonl,
                                 run_name, train_run, write_text, write_texts)
from sentiment.model.training import StopRequest

PROG = "run_variants.py"
VARIANT_EPOCHS = dict(max_epochs=30)
#: name -> (preset, options changed from it)
RUNS = {
    "tutorial": ("tutorial", {}),
    "keras-imdb": ("keras-imdb", {}),
    "keras-imdb-cnn": ("keras-imdb-cnn", {}),
    "keras-imdb-stacked": ("keras-imdb-stacked", {}),
    "keras-imdb-bidirectional": ("keras-imdb-bidirectional", {}),
    "full": ("full", {}),
    "full-adv": ("full-adv", {}),
    "stacked-2": ("tutorial", dict(layers=2, **VARIANT_EPOCHS)),
    "bidirectional": ("tutorial", dict(bidirectional=True, **VARIANT_EPOCHS)),
    "conv-pool": ("tutorial", dict(conv_filters=64, conv_width=3, pool=2, **VARIANT_EPOCHS)),
    "pooling-last": ("tutorial", dict(pooling="last", **VARIANT_EPOCHS)),
    "pooling-max": ("tutorial", dict(pooling="max", **VARIANT_EPOCHS)),
    "dim-emb-64": ("tutorial", dict(dim_emb=64, **VARIANT_EPOCHS)),
    # The tutorial itself and narrower LSTMs, capped as the variants are.
    "tutorial-30": ("tutorial", dict(VARIANT_EPOCHS)),
    "dim-proj-1": ("tutorial", dict(dim_proj=1, **VARIANT_EPOCHS)),
    "dim-proj-8": ("tutorial", dict(dim_proj=8, **VARIANT_EPOCHS)),
    "dim-proj-32": ("tutorial", dict(dim_proj=32, **VARIANT_EPOCHS)),
}


def run_options(name, seed, out_dir, dataset):
    """The Config of run ``name`` for ``seed``, saving under ``out_dir/<run>``."""
    preset, changes = RUNS[name]
    values = read_config_file(os.path.join(PRESET_DIR, preset + ".json"))
    values.update(changes, seed=seed, dataset=dataset,
                  saveto=os.path.join(out_dir, run_name(name, seed), MODEL_FILE))
    return Config.from_dict(values).validate()


def flags(name):
    """The run as ``lstm.py`` flags."""
    preset, changes = RUNS[name]
    words = ["--preset", preset]
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return " ".join(words)


def saved_size(path):
    """The number of values in the parameters of the model saved at ``path``;
    None when none was saved (a run that failed before its first validation)."""
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as saved:
        return int(sum(saved[k].size for k in saved.files
                       if k not in ("history_errs", "train_err", "valid_err", "test_err")))


def train_one(name, seed, args):
    """Train run ``name`` with ``seed``; return its record for runs.jsonl."""
    options = run_options(name, seed, args.out, args.dataset)
    run = dict(name=name, seed=seed, flags=flags(name),
               options=dataclasses.asdict(options), status=None, error=None)
    with open_run_log(options.saveto) as log:
        status, result, error = train_run(lstm.train_lstm, options, log, source=args.source)
    run.update(status=status, error=error)
    if result is not None:
        run.update(params=saved_size(options.saveto), result=result)
    return run


COLUMNS = ["run", "flags", "params", "epochs", "sec/epoch", "train err", "valid err",
           "test err", "test reviews", "seeds"]


def _row(name, done):
    """The table's row of run ``name`` from its finished seeds ``done``."""
    def stat(key, fmt):
        return format_mean_std(*mean_std(r["result"][key] for r in done), fmt)

    res = done[0]["result"]
    per_epoch = mean_std(r["result"]["seconds"] / r["result"]["epochs"] for r in done)[0]
    params = done[0].get("params")
    return {"run": name, "flags": flags(name),
            "params": "" if params is None else "{:,}".format(params),
            "epochs": stat("epochs", "%.0f"),
            "sec/epoch": format_mean_std(per_epoch, None, "%.1f"),
            "train err": stat("train_err", "%.3f"), "valid err": stat("valid_err", "%.3f"),
            "test err": stat("test_err", "%.3f"),
            "test reviews": str(res["n_test"]) if "n_test" in res else "",
            "seeds": " ".join(str(r["seed"]) for r in done)}


def rows_of(runs):
    """One row per run name: mean ± std over its finished seeds, or its last error."""
    rows = []
    for name in dict.fromkeys(r["name"] for r in runs):
        done = [r for r in runs if r["name"] == name and r["status"] in ("ok", "interrupted")
                and r.get("result") is not None]
        if done:
            rows.append(_row(name, done))
        else:
            rows.append(dict(run=name, flags=flags(name), error=[r["error"] for r in runs
                                                                if r["name"] == name][-1]))
    return rows


def markdown(rows):
    """results.md: the table of :func:`rows_of`, a failed run's error in its third column."""
    table = []
    for row in rows:
        if "error" in row:
            table.append([row["run"], "`%s`" % row["flags"], "failed: %s" % row["error"]])
        else:
            table.append([("`%s`" % row[c]) if c == "flags" else row[c] for c in COLUMNS])
    return "\n".join(markdown_table(COLUMNS, table)) + "\n"


def write_outputs(out_dir, runs):
    """Rewrite results.md, results.csv and runs.jsonl in ``out_dir``, each atomically."""
    rows = rows_of(runs)
    write_texts(out_dir, {"results.md": markdown(rows),
                          "results.csv": csv_text(COLUMNS, rows, quote_all=True),
                          "runs.jsonl": jsonl_text(runs)})


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS),
                   metavar="NAME", help="runs to train (%s)" % ", ".join(RUNS))
    p.add_argument("--seeds", nargs="+", type=int, default=[123],
                   help="seeds (each run once per seed)")
    p.add_argument("--out", default=os.path.join("runs", "variants"),
                   help="output folder")
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="preprocessed corpus")
    p.add_argument("--ensemble", action="store_true",
                   help="then evaluate each run's finished seeds as one ensemble (class "
                        "probabilities averaged) on its whole test split: ensembles.jsonl")
    p.add_argument("--source", default=None,
                   help="raw aclImdb folder or .tar.gz to build a missing imdb.pkl from "
                        "(default: $IMDB_SOURCE, data/aclImdb_v1.tar.gz, then download)")
    return p


def earlier_runs(out_dir):
    """The runs recorded in ``out_dir/runs.jsonl`` by an earlier invocation."""
    return [r for r in read_jsonl(os.path.join(out_dir, "runs.jsonl")) if r.get("name") in RUNS]


def merge(runs, run):
    """``runs`` with ``run`` replacing any run of the same name and seed, in
    :data:`RUNS` order, then by seed."""
    runs = [r for r in runs if (r["name"], r["seed"]) != (run["name"], run["seed"])]
    return sorted(runs + [run], key=lambda r: (list(RUNS).index(r["name"]), r["seed"]))


def evaluate_ensembles(args, runs):
    """Each run of ``args.runs`` evaluated as the ensemble of its finished
    ``args.seeds``; printed, and written to ``args.out/ensembles.jsonl`` in
    place of that run's earlier record (other runs' records are kept)."""
    path = os.path.join(args.out, "ensembles.jsonl")
    records = read_jsonl(path)
    for name in args.runs:
        done = [r for r in runs if r["name"] == name and r["seed"] in args.seeds
                and r["status"] == "ok"]
        if len(done) < 2:
            print("%s: fewer than two finished seeds, no ensemble" % name, flush=True)
            continue
        start = time.time()
        result = lstm.evaluate_model([r["options"]["saveto"] for r in done])
        result.update(name=name, seeds=[r["seed"] for r in done],
                      seconds=round(time.time() - start, 3))
        records = [r for r in records if r["name"] != name] + [result]
        print("%s: ensemble of seeds %s: test accuracy %.4f (error %.4f) on %d reviews, %d s"
              % (name, " ".join(map(str, result["seeds"])), result["accuracy"],
                 1 - result["accuracy"], result["n"], round(result["seconds"])), flush=True)
    write_text(path, jsonl_text(records))


def main(argv=None):
    args = build_parser().parse_args(argv)
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    try:
        runs = earlier_runs(args.out)  # a run trained again replaces its earlier record
        for seed in args.seeds:
            for name in args.runs:
                print("%s (seed %d): %s" % (name, seed, flags(name)), flush=True)
                with StopRequest() as stop:
                    run = train_one(name, seed, args)
                # Re-read: another invocation (other seeds) may share --out.
                runs = merge(earlier_runs(args.out), run)
                write_outputs(args.out, runs)
                r = run.get("result") or {}
                print("  %s: test err %s, %s s" % (run["status"], r.get("test_err"),
                                                   round(r.get("seconds", 0))), flush=True)
                if stop.requested or run["status"] == "interrupted":
                    return 130
        if args.ensemble:
            evaluate_ensembles(args, runs)
    except DataError as exc:
        return report(PROG, exc)
    print(markdown(rows_of(runs)))
    print("wall time %d s" % round(time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
