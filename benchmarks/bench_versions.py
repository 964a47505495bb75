"""This checkout's training update and prediction against another version's, side by side.

    python benchmarks/bench_versions.py --against HEAD~3

The other version (any git revision) is checked out into a temporary git
worktree; both run the same child script in their own process, alternately
(``--rounds``), so that the machine's drift touches both alike. Printed: the
median milliseconds of each, and the ratio other / this (> 1: this checkout is
faster), with the CPU it ran on.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sentiment.kernels.machine import describe  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
import lstm
T, B, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
options = lstm.Config(ydim=2, saveto="")
model = lstm.compile_model(options, lstm.init_params(options, np.random.default_rng(0)),
                           np.random.default_rng(1))
rng = np.random.default_rng(2)
x = rng.integers(2, options.n_words, size=(T, B)).astype("int64")
mask, y = np.ones((T, B), "float32"), rng.integers(0, 2, size=B).astype("int64")
lr = np.float32(options.lrate)
times = {"update": [], "predict": []}
for n in range(repeats + 5):  # 5 warm-up calls
    start = time.perf_counter()
    model["f_grad_shared"](x, mask, y)
    model["f_update"](lr)
    middle = time.perf_counter()
    model["f_pred_prob"](x, mask)
    end = time.perf_counter()
    if n >= 5:
        times["update"].append(1e3 * (middle - start))
        times["predict"].append(1e3 * (end - middle))
print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
"""


def parse_shape(text):
    T, B = text.lower().split("x")
    return int(T), int(B)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--against", default="HEAD", help="the git revision to compare with")
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[(100, 16), (400, 64)],
                   metavar="TxB", help="batch shapes: time steps x reviews")
    p.add_argument("--rounds", type=int, default=4, help="alternations of the two versions")
    p.add_argument("--repeats", type=int, default=40, help="timed calls per round")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    return p


def run_child(tree, T, B, repeats):
    env = dict(os.environ, PYTHONPATH=tree)
    done = subprocess.run([sys.executable, "-c", CHILD, str(T), str(B), str(repeats)],
                          cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(other, shapes, rounds, repeats):
    """``{shape: {version: {what: [ms per round]}}}``, the versions alternating."""
    results = {}
    for T, B in shapes:
        runs = {"this": {"update": [], "predict": []}, "other": {"update": [], "predict": []}}
        for _ in range(rounds):
            for name, tree in (("this", ROOT), ("other", other)):
                for what, ms in run_child(tree, T, B, repeats).items():
                    runs[name][what].append(ms)
        results["%dx%d" % (T, B)] = runs
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "other")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", other, args.against],
                       check=True, capture_output=True)
        try:
            results = compare(other, args.shapes, args.rounds, args.repeats)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", other],
                           capture_output=True)
    print("%-8s %-8s %12s %12s %8s" % ("shape", "what", "this ms", args.against + " ms", "ratio"))
    for shape, runs in results.items():
        for what in ("update", "predict"):
            this, other = (statistics.median(runs[v][what]) for v in ("this", "other"))
            print("%-8s %-8s %12.2f %12.2f %7.2fx" % (shape, what, this, other, other / this))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(against=args.against, machine=describe(), results=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
