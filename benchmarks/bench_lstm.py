"""The project's training update and prediction against PyTorch, side by side.

For each shape (``--shapes``, default the tutorial's T=100, B=16 and full
reviews' T=400, B=64) one process builds the tutorial's model (dim 128,
n_words 10,000, float32, no dropout so that both compute the same cost) with
each of the project's LSTM implementations (``--impls``: the fused Ops and the
tutorial's scan) and the same model in PyTorch (``nn.Embedding`` +
``nn.LSTM`` on the padded batch + mean pool + ``nn.Linear``, the same initial
weights, ``torch.optim.Adadelta(lr=1, rho=0.95, eps=1e-6)``: the tutorial's
AdaDelta). It checks that every implementation computes the same cost on the
same batch, and the same parameters after one update, then times, in rounds
that alternate between them, ``--repeats`` training updates (forward,
backward, AdaDelta step), predictions (8 batches of other words in turn,
after one pass over them with the same weights, as in the middle of a long
evaluation) and predictions just after an update, and prints medians and
ratios. The project's prediction keeps the input projections of the
embedding rows it has computed while the weights stay the same
(``fused_graph.ProjectedRows``: ``evaluate``, ``predict``, each validation);
just after an update it computes them again, the cost of a prediction on new
weights ("new w.").

The FLOP bound is the time the update's six large matrix products
(48 T B dim^2 FLOP) take at the float32 GEMM rate measured side by side with
the timed calls (NumPy, two 2048^3 products in each round; their median).

    pip install -r benchmarks/requirements.txt      # PyTorch 2.13 CPU, benchmark only
    python benchmarks/bench_lstm.py
    python benchmarks/bench_lstm.py --shapes 100x16 --impls fused --json out.json

Run it on a quiet machine: a second busy process on 2 cores makes timings
meaningless (on a shared host, other guests can take the cores' arithmetic for
seconds at a time: the GEMM rate measured in the rounds shows it). Ratios above
1 mean the project is faster than PyTorch. The medians come from ``--repeats``
calls per measure in ``--rounds`` bursts; the middle half of the update's calls
is printed too, to show the machine's noise.
"""
import argparse
import functools
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import lstm  # noqa: E402  (first: sets the project's PyTensor flags)
import numpy as np  # noqa: E402
import pytensor  # noqa: E402

from sentiment.kernels import fused_lstm  # noqa: E402
from sentiment.model.config import LSTM_IMPLS, Config  # noqa: E402
from sentiment.kernels.machine import cpu_info, describe  # noqa: E402

DIM, N_WORDS, YDIM = 128, 10000, 2


def parse_shape(text):
    try:
        T, B = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("shape must be TxB, e.g. 100x16, not %r" % text)
    if T < 1 or B < 1:
        raise argparse.ArgumentTypeError("T and B must be positive")
    return T, B


def make_batch(T, B, seed=1):
    """Random words, every review T tokens long (mask of ones), random labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(2, N_WORDS, size=(T, B)).astype("int64")
    mask = np.ones((T, B), dtype="float32")
    y = rng.integers(0, YDIM, size=B).astype("int64")
    return x, mask, y


class Project:
    """lstm.py's compiled functions for one LSTM implementation."""

    def __init__(self, impl, params):
        self.name = "project-" + impl
        options = Config(dim_proj=DIM, n_words=N_WORDS, ydim=YDIM, use_dropout=False,
                         lstm_impl=impl)
        start = time.perf_counter()
        self.model = lstm.compile_model(options, {k: v.copy() for k, v in params.items()})
        self.compile_s = time.perf_counter() - start
        self.lr = np.float32(0.0)

    def update(self, x, mask, y):
        cost = self.model["f_grad_shared"](x, mask, y)
        self.model["f_update"](self.lr)
        return float(cost)

    def predict(self, x, mask):
        return self.model["f_pred_prob"](x, mask)

    def params(self):
        return lstm.unzip(self.model["tparams"])


class Torch:
    """The same model in PyTorch, from the same initial parameters."""

    def __init__(self, params):
        import torch
        from torch import nn

        self.torch = torch
        self.name = "pytorch"

        def gates(w):  # the tutorial's gate order i, f, o, c~ -> PyTorch's i, f, g, o
            i, f, o, c = np.split(w, 4, axis=-1)
            return np.concatenate([i, f, c, o], axis=-1)

        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        self.emb = nn.Embedding(N_WORDS, DIM)
        self.rnn = nn.LSTM(DIM, DIM)
        self.out = nn.Linear(DIM, YDIM)
        with torch.no_grad():
            self.emb.weight.copy_(t(params["Wemb"]))
            self.rnn.weight_ih_l0.copy_(t(gates(params["lstm_W"]).T))
            self.rnn.weight_hh_l0.copy_(t(gates(params["lstm_U"]).T))
            self.rnn.bias_ih_l0.copy_(t(gates(params["lstm_b"])))
            self.rnn.bias_hh_l0.zero_()
            self.out.weight.copy_(t(params["U"].T))
            self.out.bias.copy_(t(params["b"]))
        # The tutorial has one bias per gate: PyTorch's second one stays 0.
        self.rnn.bias_hh_l0.requires_grad_(False)
        self.modules = [self.emb, self.rnn, self.out]
        self.opt = torch.optim.Adadelta([p for m in self.modules for p in m.parameters()
                                         if p.requires_grad], lr=1.0, rho=0.95, eps=1e-6)
        self.compile_s = 0.0

    def _probs(self, x, mask):
        h, _ = self.rnn(self.emb(x))  # x: (T, B) -> h: (T, B, dim)
        proj = (h * mask[:, :, None]).sum(0) / mask.sum(0)[:, None]
        return self.torch.softmax(self.out(proj), dim=-1)

    def update(self, x, mask, y):
        torch = self.torch
        x, mask, y = torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        probs = self._probs(x, mask)
        cost = -torch.log(probs[torch.arange(len(y)), y] + 1e-8).mean()
        cost.backward()
        self.opt.step()
        return cost.item()

    def predict(self, x, mask):
        with self.torch.no_grad():
            return self._probs(self.torch.from_numpy(x), self.torch.from_numpy(mask)).numpy()

    def params(self):
        def back(w):  # PyTorch's i, f, g, o -> i, f, o, c~
            i, f, g, o = np.split(w, 4, axis=-1)
            return np.concatenate([i, f, o, g], axis=-1)
        r = self.rnn
        return {"Wemb": self.emb.weight.detach().numpy(),
                "lstm_W": back(r.weight_ih_l0.detach().numpy().T),
                "lstm_U": back(r.weight_hh_l0.detach().numpy().T),
                "lstm_b": back((r.bias_ih_l0 + r.bias_hh_l0).detach().numpy()),
                "U": self.out.weight.detach().numpy().T, "b": self.out.bias.detach().numpy()}


@functools.lru_cache(maxsize=1)
def _gemm_inputs(n):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype="float32")
    b = rng.standard_normal((n, n), dtype="float32")
    a @ b  # (warm-up)
    return a, b


def gemm_rates(n=2048, repeats=5):
    """float32 GEMM rate of this machine (NumPy's BLAS, all its threads), GFLOP/s,
    of each of ``repeats`` products of two ``n x n`` matrices."""
    a, b = _gemm_inputs(n)
    return [2 * n ** 3 / _timed(lambda: a @ b) / 1e9 for _ in range(repeats)]


def gemm_gflops(n=2048, repeats=5):
    """The fastest of :func:`gemm_rates`."""
    return max(gemm_rates(n, repeats))


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check_agreement(runners, T, B):
    """Same cost on the same batch, same parameters after one update, same prediction."""
    x, mask, y = make_batch(T, B, seed=2)
    ref = runners[0]
    probs = [r.predict(x, mask) for r in runners]
    costs = [r.update(x, mask, y) for r in runners]
    after = [r.params() for r in runners]
    report = []
    for r, p, c, a in zip(runners, probs, costs, after):
        d_prob = float(np.abs(p - probs[0]).max())
        d_param = max(float(np.abs(a[k] - after[0][k]).max()) for k in a)
        report.append(dict(name=r.name, cost=c, max_prob_diff=d_prob, max_param_diff=d_param))
        ok = (abs(c - costs[0]) <= 1e-5 * max(1.0, abs(costs[0])) and d_prob < 1e-5
              and d_param < 1e-4)
        print("  %-16s cost %.7f  vs %s: prediction %.1e, parameters after one update %.1e  %s"
              % (r.name, c, ref.name, d_prob, d_param, "ok" if ok else "DIFFERENT"))
        if not ok:
            raise SystemExit("bench_lstm.py: %s does not compute what %s computes"
                             % (r.name, ref.name))
    return report


PREDICT_BATCHES = 8  # predictions cycle through this many batches of other words
OPENBLAS_SETTLE_S = 0.5  # after NumPy's GEMM, OpenBLAS's idle threads spin for a while
# (about 0.1 s) and would take a core from the calls timed next


def measure(runners, T, B, repeats, rounds):
    """Median ms per update, per prediction and per prediction just after an
    update (``predict_new``: new weights, so the project's kept projections of
    the embedding rows are all computed again), alternating between runners
    by round; and the quartiles (ms) of each runner's update calls."""
    x, mask, y = make_batch(T, B)
    batches = [make_batch(T, B, seed=10 + k)[:2] for k in range(PREDICT_BATCHES)]
    for r in runners:  # warm-up
        r.update(x, mask, y)
        for xb, mb in batches:
            r.predict(xb, mb)
    times = {r.name: {"update": [], "predict": [], "predict_new": []} for r in runners}
    gemm = []  # GFLOP/s, side by side with the timed calls
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        gemm += gemm_rates(repeats=2)
        time.sleep(OPENBLAS_SETTLE_S)
        for r in runners:
            t = times[r.name]
            for _ in range(per_round):
                t["update"].append(_timed(lambda: r.update(x, mask, y)))
            for xb, mb in batches:  # (untimed) as in a long evaluation, with these weights
                r.predict(xb, mb)
            for k in range(per_round):
                xb, mb = batches[k % len(batches)]
                t["predict"].append(_timed(lambda: r.predict(xb, mb)))
            for k in range(per_round):
                xb, mb = batches[k % len(batches)]
                r.update(x, mask, y)
                t["predict_new"].append(_timed(lambda: r.predict(xb, mb)))
    medians = {name: {k: 1000 * float(np.median(v)) for k, v in t.items()}
               for name, t in times.items()}
    quartiles = {name: [1000 * float(q) for q in np.percentile(t["update"], [25, 75])]
                 for name, t in times.items()}
    return medians, quartiles, gemm


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[(100, 16), (400, 64)],
                   metavar="TxB", help="batch shapes: time steps x reviews")
    p.add_argument("--impls", nargs="+", choices=LSTM_IMPLS, default=list(LSTM_IMPLS),
                   help="the project's LSTM implementations to time")
    p.add_argument("--repeats", type=int, default=64,
                   help="timed calls per measure (the more, the less a burst of the "
                        "machine's noise moves the medians)")
    p.add_argument("--rounds", type=int, default=8,
                   help="alternate between implementations this many times")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="PyTorch's threads (0: its default); for a one-core comparison "
                        "also set OPENBLAS_NUM_THREADS=1 for the project's BLAS")
    p.add_argument("--torch-no-onednn", action="store_true",
                   help="turn off PyTorch's oneDNN (MKL-DNN) kernels, which its nn.LSTM uses "
                        "on CPU by default, to see what they bring")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def bench_shape(T, B, args, start_gflops):
    """Check and time every implementation and PyTorch on one shape; its JSON record."""
    print("\nT=%d, B=%d" % (T, B))
    params = lstm.init_params(Config(dim_proj=DIM, n_words=N_WORDS, ydim=YDIM),
                              np.random.default_rng(0))
    runners = [Project(impl, params) for impl in args.impls] + [Torch(params)]
    check_agreement(runners, T, B)
    ms, quartiles, gemm = measure(runners, T, B, args.repeats, args.rounds)
    # The bound at the GEMM rate measured side by side with the timed calls
    # (two products a round; their median, as the calls' medians): a busy
    # host slows both alike, where one measurement before the run could
    # catch the host quiet, or busy (half the rate, at times).
    gflops = float(np.median(gemm))
    print("  NumPy GEMM in the rounds: median %.0f GFLOP/s (%.0f-%.0f); %.0f before the "
          "first shape, best of five" % (gflops, min(gemm), max(gemm), start_gflops))
    bound = 48 * T * B * DIM ** 2 / (gflops * 1e9) * 1000
    torch_ms = ms["pytorch"]
    print("  %-16s %9s %9s %9s %9s %9s %9s %9s" % (
        "", "update", "predict", "new w.", "update", "predict", "new w.", "vs bound"))
    for r in runners:
        m = ms[r.name]
        print("  %-16s %6.2f ms %6.2f ms %6.2f ms %8.2fx %8.2fx %8.2fx %8.2fx"
              % (r.name, m["update"], m["predict"], m["predict_new"],
                 torch_ms["update"] / m["update"], torch_ms["predict"] / m["predict"],
                 torch_ms["predict_new"] / m["predict_new"], m["update"] / bound))
    print("  (ratios: PyTorch's time / this one's, > 1 = faster than PyTorch; predict: "
          "%d batches in turn; new w.: prediction just after an update; vs bound: update "
          "time / FLOP bound %.2f ms)" % (PREDICT_BATCHES, bound))
    print("  update, middle half of the timed calls: %s" % ", ".join(
        "%s %.2f-%.2f ms" % (r.name, *quartiles[r.name]) for r in runners))
    main_ms = ms["project-" + args.impls[0]]
    return dict(T=T, B=B, impl=args.impls[0],
                project_ms=main_ms["update"], pytorch_ms=torch_ms["update"],
                ratio=torch_ms["update"] / main_ms["update"],
                project_predict_ms=main_ms["predict"],
                pytorch_predict_ms=torch_ms["predict"],
                predict_ratio=torch_ms["predict"] / main_ms["predict"],
                project_predict_new_ms=main_ms["predict_new"],
                pytorch_predict_new_ms=torch_ms["predict_new"],
                predict_new_ratio=torch_ms["predict_new"] / main_ms["predict_new"],
                flop_bound_ms=bound, gemm_gflops=gflops, gemm_gflops_rounds=gemm,
                all_ms=ms, update_quartiles_ms=quartiles)


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        p.error("PyTorch is not installed: pip install -r benchmarks/requirements.txt")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    torch.backends.mkldnn.enabled = not args.torch_no_onednn

    gflops = gemm_gflops()
    print("PyTensor %s (mode %s, OPENBLAS_NUM_THREADS=%s), PyTorch %s with %d threads, "
          "oneDNN %s, NumPy GEMM %.0f GFLOP/s"
          % (pytensor.__version__, Config().mode,
             os.environ.get("OPENBLAS_NUM_THREADS", "unset"), torch.__version__,
             torch.get_num_threads(), "on" if torch.backends.mkldnn.enabled else "off", gflops))
    fused_lstm.setup()
    print("Fused LSTM's GEMMs: %s" % fused_lstm.gemm_kernel)
    print(describe())
    shapes = [bench_shape(T, B, args, gflops) for T, B in args.shapes]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(shapes=shapes,
                           flop_bound_ms={"%dx%d" % (s["T"], s["B"]): s["flop_bound_ms"]
                                          for s in shapes},
                           gemm_gflops=gflops, torch_threads=torch.get_num_threads(),
                           torch_onednn=bool(torch.backends.mkldnn.enabled),
                           fused_gemm=fused_lstm.gemm_kernel, machine=cpu_info(),
                           openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS")), f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
