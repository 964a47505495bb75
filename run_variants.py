"""Train each preset and model variant once on IMDB and tabulate the results.

``python run_variants.py`` trains, one after the other, the runs named in
:data:`RUNS` (or those given with ``--runs``): each preset as it is
(``tutorial``, ``keras-imdb`` and its CNN, stacked and bidirectional
versions, ``full``: the full-data run of the README's "Results on the full
test set"), and each variant of ``lstm.py``
(stacked, bidirectional, convolution + pooling, last/max pooling, a separate
embedding size) on the tutorial's set-up with ``--max-epochs 30``. It writes to
``--out`` (default ``runs/variants``):

- ``results.md`` / ``results.csv``: per run, its options (as ``lstm.py`` flags),
  parameters, epochs, seconds per epoch, the best model's train/valid/test
  error and the number of test reviews;
- ``runs.jsonl``: one JSON object per run (its options, ``train_lstm``'s result);
- ``<run>/``: what ``lstm.py`` writes (model, ``.json`` options, ``.log.jsonl``)
  and ``train.log``.

The outputs are rewritten after every run, keeping the runs of earlier (or
concurrent) invocations in the same ``--out`` (a run trained again replaces its record);
Ctrl-C stops after the current run's clean stop. ``--seeds 1 2 3`` repeats every run per seed (the tables
then give mean ± std); with ``--ensemble``, each run's finished seeds are then
also evaluated as one ensemble (their class probabilities averaged, as
``lstm.py evaluate --model A B C``) on every review of the test split, and the
result is written to ``ensembles.jsonl``.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

import numpy as np

import lstm
from compare_optimizers import _json_safe, _one_line
from imdb import DataError

VARIANT_EPOCHS = dict(max_epochs=30)
#: name -> (preset, options changed from it)
RUNS = {
    "tutorial": ("tutorial", {}),
    "keras-imdb": ("keras-imdb", {}),
    "keras-imdb-cnn": ("keras-imdb-cnn", {}),
    "keras-imdb-stacked": ("keras-imdb-stacked", {}),
    "keras-imdb-bidirectional": ("keras-imdb-bidirectional", {}),
    "full": ("full", {}),
    "stacked-2": ("tutorial", dict(layers=2, **VARIANT_EPOCHS)),
    "bidirectional": ("tutorial", dict(bidirectional=True, **VARIANT_EPOCHS)),
    "conv-pool": ("tutorial", dict(conv_filters=64, conv_width=3, pool=2, **VARIANT_EPOCHS)),
    "pooling-last": ("tutorial", dict(pooling="last", **VARIANT_EPOCHS)),
    "pooling-max": ("tutorial", dict(pooling="max", **VARIANT_EPOCHS)),
    "dim-emb-64": ("tutorial", dict(dim_emb=64, **VARIANT_EPOCHS)),
}


def run_options(name, seed, out_dir, dataset):
    """The Config of run ``name`` for ``seed``, saving under ``out_dir/<run>``."""
    preset, changes = RUNS[name]
    values = lstm.read_config_file(os.path.join(lstm.PRESET_DIR, preset + ".json"))
    values.update(changes, seed=seed, dataset=dataset,
                  saveto=os.path.join(out_dir, run_dir(name, seed), "lstm_model.npz"))
    return lstm.Config.from_dict(values).validate()


def run_dir(name, seed):
    return "%s-seed%d" % (name, seed)


def flags(name):
    """The run as ``lstm.py`` flags."""
    preset, changes = RUNS[name]
    words = ["--preset", preset]
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return " ".join(words)


def train_one(name, seed, args):
    options = run_options(name, seed, args.out, args.dataset)
    folder = os.path.dirname(options.saveto)
    os.makedirs(folder, exist_ok=True)
    run = dict(name=name, seed=seed, flags=flags(name),
               options=dataclasses.asdict(options), status=None, error=None)
    with open(os.path.join(folder, "train.log"), "w", encoding="utf-8", buffering=1) as log:
        try:
            with contextlib.redirect_stderr(log):
                result = lstm.train_lstm(options, source=args.source, out=log)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 -- reported, the other runs go on
            run.update(status="error", error="%s: %s" % (type(exc).__name__, _one_line(exc)))
            return run
    with np.load(options.saveto, allow_pickle=False) as saved:
        n_params = int(sum(saved[k].size for k in saved.files
                           if k not in ("history_errs", "train_err", "valid_err", "test_err")))
    run.update(status=result["status"], params=n_params,
               result={k: v for k, v in result.items() if k != "history_errs"})
    return run


COLUMNS = ["run", "flags", "params", "epochs", "sec/epoch", "train err", "valid err",
           "test err", "test reviews", "seeds"]


def rows_of(runs):
    rows = []
    for name in dict.fromkeys(r["name"] for r in runs):
        done = [r for r in runs if r["name"] == name and r["status"] in ("ok", "interrupted")]
        if not done:
            rows.append(dict(run=name, flags=flags(name), error=[r["error"] for r in runs
                                                                if r["name"] == name][-1]))
            continue

        def stat(key, fmt):
            values = np.array([r["result"][key] for r in done], dtype="float64")
            text = fmt % values.mean()
            return text + (" ± " + fmt % values.std(ddof=1) if len(values) > 1 else "")
        res = done[0]["result"]
        rows.append({"run": name, "flags": flags(name), "params": "{:,}".format(done[0]["params"]),
                     "epochs": stat("epochs", "%.0f"),
                     "sec/epoch": "%.1f" % np.mean([r["result"]["seconds"] / r["result"]["epochs"]
                                                    for r in done]),
                     "train err": stat("train_err", "%.3f"), "valid err": stat("valid_err", "%.3f"),
                     "test err": stat("test_err", "%.3f"),
                     "test reviews": str(res["n_test"]) if "n_test" in res else "",
                     "seeds": " ".join(str(r["seed"]) for r in done)})
    return rows


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if "error" in row:
            lines.append("| %s | `%s` | failed: %s |" % (row["run"], row["flags"], row["error"]))
        else:
            lines.append("| " + " | ".join(("`%s`" % row[c]) if c == "flags" else row[c]
                                           for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out_dir, runs):
    rows = rows_of(runs)
    texts = {"results.md": markdown(rows),
             "results.csv": "\n".join([",".join(COLUMNS)] + [",".join(
                 '"%s"' % row.get(c, "") for c in COLUMNS) for row in rows]) + "\n",
             "runs.jsonl": "".join(json.dumps(_json_safe(r), sort_keys=True) + "\n"
                                   for r in runs)}
    for name, text in texts.items():
        data = text.encode("utf-8")
        lstm.atomic_write(os.path.join(out_dir, name), lambda f: f.write(data))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS),
                   metavar="NAME", help="runs to train (%s)" % ", ".join(RUNS))
    p.add_argument("--seeds", nargs="+", type=int, default=[123],
                   help="seeds (each run once per seed)")
    p.add_argument("--out", default=os.path.join("runs", "variants"),
                   help="output folder")
    p.add_argument("--dataset", default=lstm.DEFAULT_DATASET, help="preprocessed corpus")
    p.add_argument("--ensemble", action="store_true",
                   help="then evaluate each run's finished seeds as one ensemble (class "
                        "probabilities averaged) on its whole test split: ensembles.jsonl")
    p.add_argument("--source", default=None,
                   help="raw aclImdb folder or .tar.gz to build a missing imdb.pkl from "
                        "(default: $IMDB_SOURCE, data/aclImdb_v1.tar.gz, then download)")
    return p


def earlier_runs(out_dir):
    """The runs recorded in ``out_dir/runs.jsonl`` by an earlier invocation."""
    path = os.path.join(out_dir, "runs.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r.get("name") in RUNS]


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
    records = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
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
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    lstm.atomic_write(path, lambda f: f.write(text))


def main(argv=None):
    args = build_parser().parse_args(argv)
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    runs = earlier_runs(args.out)  # a run trained again replaces its earlier record
    try:
        for seed in args.seeds:
            for name in args.runs:
                print("%s (seed %d): %s" % (name, seed, flags(name)), flush=True)
                with lstm.StopRequest() as stop:
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
        print("run_variants.py: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    print(markdown(rows_of(runs)))
    print("wall time %d s" % round(time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
