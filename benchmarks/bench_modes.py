"""Compile modes side by side: compile time and time per training update.

Each mode runs in its own subprocess, first with an empty PyTensor compile
cache (cold: what the first ``python lstm.py`` pays), then again with the
cache it left (warm: every later start). Each run builds the tutorial's model
(dim 128, n_words 10,000, AdaDelta, dropout, float32), times the compilation
of its functions and the first call, then the median of ``--repeats``
training updates (``f_grad_shared`` + ``f_update``) and of prediction calls
on one fixed batch, and checks that every mode computes the same cost.

    python benchmarks/bench_modes.py                  # CVM and NUMBA
    python benchmarks/bench_modes.py --modes CVM NUMBA FAST_COMPILE --json out.json

Run it on a quiet machine: a second busy process on 2 cores makes timings
meaningless. It prints ratios to the first mode given.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(mode, T, B, repeats):
    """Measure one mode in this process; print one JSON line."""
    sys.path.insert(0, ROOT)
    import lstm  # first: sets the project's PyTensor flags
    import numpy as np
    from sentiment.model.config import Config

    options = Config(mode=mode, ydim=2)
    rngs = lstm.make_rngs(0)
    start = time.perf_counter()
    params = lstm.init_params(options, rngs["init"])
    model = lstm.compile_model(options, params, rngs["dropout"])
    compile_s = time.perf_counter() - start

    rng = np.random.default_rng(1)
    x = rng.integers(2, options.n_words, size=(T, B)).astype("int64")
    mask = np.ones((T, B), dtype="float32")
    y = rng.integers(0, 2, size=B).astype("int64")
    lr = np.float32(options.lrate)

    start = time.perf_counter()
    first_cost = float(model["f_grad_shared"](x, mask, y))
    model["f_update"](lr)
    model["f_pred_prob"](x, mask)
    first_call_s = time.perf_counter() - start

    update_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        model["f_grad_shared"](x, mask, y)
        model["f_update"](lr)
        update_ms.append(1000 * (time.perf_counter() - start))
    predict_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        model["f_pred_prob"](x, mask)
        predict_ms.append(1000 * (time.perf_counter() - start))
    print(json.dumps(dict(mode=mode, compile_s=compile_s, first_call_s=first_call_s,
                          first_cost=first_cost,
                          update_ms=float(np.median(update_ms)),
                          predict_ms=float(np.median(predict_ms)))))


def run(mode, compiledir, args):
    """One subprocess measuring ``mode`` with the given compile cache folder."""
    env = dict(os.environ)
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, "base_compiledir=" + compiledir]))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--T", str(args.T),
                          "--B", str(args.B), "--repeats", str(args.repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", default=["CVM", "NUMBA"],
                   help="PyTensor modes to compare (ratios are to the first)")
    p.add_argument("--T", type=int, default=100, help="time steps of the batch")
    p.add_argument("--B", type=int, default=16, help="reviews in the batch")
    p.add_argument("--repeats", type=int, default=25, help="timed calls per measure")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.T, args.B, args.repeats)

    rows = []
    for mode in args.modes:
        with tempfile.TemporaryDirectory(prefix="bench_modes_") as cache:
            for state in ("cold", "warm"):
                r = run(mode, cache, args)
                r["cache"] = state
                rows.append(r)
                print("%-6s %-4s process %6.1f s  compile %6.1f s  first call %6.1f s  "
                      "update %7.1f ms  predict %6.1f ms  cost %.6f"
                      % (mode, state, r["process_s"], r["compile_s"], r["first_call_s"],
                         r["update_ms"], r["predict_ms"], r["first_cost"]), flush=True)
    costs = {round(r["first_cost"], 5) for r in rows}
    print("same first cost in every mode:", len(costs) == 1, sorted(costs))
    base = {r["cache"]: r for r in rows if r["mode"] == args.modes[0]}
    print("\nratios to %s (> 1: %s is faster)" % (args.modes[0], args.modes[0]))
    for r in rows:
        b = base[r["cache"]]
        print("%-6s %-4s  start-up %.2fx  update %.2fx  predict %.2fx"
              % (r["mode"], r["cache"], r["process_s"] / b["process_s"],
                 r["update_ms"] / b["update_ms"], r["predict_ms"] / b["predict_ms"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(T=args.T, B=args.B, rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
