"""``lstm.py evaluate`` against PyTorch running the same model, the whole job, side by side.

Our side is timed exactly as ``lstm.py evaluate`` runs: one call of
``sentiment.commands.evaluate.classify_split(model, lstm.load_model, dataset, split)``
(a fresh model each time: loading and compiling it is timed apart from the
classification; so is reading the dataset). Its reviews are sorted by length
and classified in minibatches of the model's ``valid_batch_size`` (or
``--batch-size``) reviews, made by
``variants.batcher(options)`` (``imdb.prepare_data``, or ``prepare_padded``
with ``pad_to``). "Classification" is the time of the model's ``classify``
call: every minibatch built and run, the probabilities gathered.

The PyTorch side builds the same model from the saved parameters (word
embeddings, plus hashed bigram embeddings with the ids ``variants.bigram_ids``
gives, computed in NumPy inside the timed loop as ours computes them inside its
graph; ``nn.LSTM``, bidirectional when the model is; mean, max, meanmax or last
pooling over the real tokens only; a bag of embeddings; dropout's 0.5 scaling;
the softmax classifier) and runs it under ``torch.no_grad()`` on the same
minibatches, in the same order, built by the same function, timed over the
same scope. The project's LSTM starts from zeros and carries ``h`` and ``c``
unchanged through padded steps; the backward direction reads the time-flipped
minibatch, so with post padding it meets the padding first. PyTorch computes
the same function on each minibatch's reviews moved to the start of their
columns (pre padding puts them at the end), in one of two ways
(``--torch-lstm``): ``reversed`` (the default) runs a plain padded ``nn.LSTM``
per direction, the backward one on each review reversed within its own length
(the padding stays after it, so it never reaches a real step), which PyTorch
runs with its oneDNN kernel; ``packed`` runs one bidirectional ``nn.LSTM`` on
``pack_padded_sequence``, which does not use oneDNN and was slower in short
measurements here on 1 and 2 threads. Both sides must give the same class
probabilities (at most 1e-4 apart) and the same accuracy, else the run fails.

Repeat 1 of each side pays first-call costs (Numba's cached kernels loaded,
PyTorch's first calls): use ``--repeats 3`` or more and read the best or the
median. Models with a convolution or stacked LSTM layers are refused.

    pip install -r benchmarks/requirements.txt      # PyTorch 2.13 CPU, benchmark only
    python benchmarks/bench_evaluate.py --model full.npz
    python benchmarks/bench_evaluate.py --model full.npz --limit 2000 --repeats 3 --json out.json

Run it on a quiet machine: a second busy process on 2 cores makes timings
meaningless. Ratios above 1 mean the project is faster than PyTorch.
"""
import argparse
import dataclasses
import json
import os
import pickle
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import lstm  # noqa: E402  (first: sets the project's PyTensor flags)
import numpy as np  # noqa: E402
import pytensor  # noqa: E402

import imdb  # noqa: E402
from sentiment.commands import evaluate as evaluation  # noqa: E402
from sentiment.kernels import fused_lstm  # noqa: E402
from sentiment.model import variants
from sentiment.model.config import model_paths  # noqa: E402
from sentiment.common.errors import DataError  # noqa: E402
from sentiment.kernels.machine import cpu_info, describe  # noqa: E402

TOLERANCE = 1e-4  # the largest difference of a class probability accepted
TORCH_LSTMS = ("reversed", "packed")


# ---------------------------------------------------------------------------
# What the PyTorch side builds.
# ---------------------------------------------------------------------------
def unsupported(options):
    """Why the PyTorch side cannot build this model (a phrase), or None."""
    if options.conv_filters:
        return "it has a convolution before the LSTM (conv_filters=%d)" % options.conv_filters
    if options.layers != 1:
        return "it has %d stacked LSTM layers" % options.layers
    return None


def bigram_ids(x, mask, n_words, buckets):
    """``variants.bigram_ids`` in NumPy: the same uint32 arithmetic (whose
    wrap-around is the ``mod 2**32``), the same ids, ``(n_timesteps, n_samples)``."""
    prev = np.zeros_like(x)
    prev[1:] = np.where(mask[:-1] > 0, x[:-1], 0)
    pair = prev.astype(np.uint32) * np.uint32(n_words) + x.astype(np.uint32)
    return ((pair * np.uint32(2654435761)) % np.uint32(buckets)).astype(np.int64)


def left_aligned(x, mask):
    """``(x, lengths)`` with each review's tokens moved to the start of its
    column (``prepare_padded`` with ``padding="pre"`` puts them at the end)
    and the padding after them set to 0; ``x`` itself when already so.

    The masks built here are one run of real steps per review, so this keeps
    every review's tokens in order, and the first token's previous word is
    padding either way (its bigram id is unchanged).
    """
    real = mask > 0
    lengths = real.sum(axis=0).astype(np.int64)
    steps = np.arange(x.shape[0])[:, None]
    if not np.array_equal(real, steps < lengths):
        start = real.argmax(axis=0)  # the first real step of each review
        idx = np.minimum(start[None, :] + steps, x.shape[0] - 1)
        x = np.where(steps < lengths, np.take_along_axis(x, idx, axis=0), 0)
    return x, lengths


def _gates(w):
    """The tutorial's gate order i, f, o, c~ -> PyTorch's i, f, g, o (last axis)."""
    i, f, o, c = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, c, o], axis=-1)


class TorchModel:
    """The saved model in PyTorch (float32, inference only).

    ``probs(x, mask)`` takes a minibatch as the project's batcher builds it
    (time first, NumPy) and returns its class probabilities (NumPy).
    ``lstm_impl``: ``"packed"`` (one ``nn.LSTM`` on packed sequences) or
    ``"reversed"`` (one padded ``nn.LSTM`` per direction, the backward one
    reading each review reversed within its length).
    """

    def __init__(self, options, params, lstm_impl="reversed"):
        import torch
        from torch import nn

        why = unsupported(options)
        if why:
            raise DataError("the PyTorch side does not build this model: %s" % why)
        if lstm_impl not in TORCH_LSTMS:
            raise ValueError("lstm_impl must be one of %s" % ", ".join(TORCH_LSTMS))
        self.torch, self.options, self.lstm_impl = torch, options, lstm_impl
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        self.Wemb = t(params["Wemb"])
        self.Wbigram = t(params["Wbigram"]) if options.bigram_buckets else None
        prefixes = variants.lstm_prefixes(options)[0]  # ["lstm"] or ["lstm", "lstm_rev"]
        dim, n_in = options.dim_proj, options.emb_dim

        def load(rnn, prefix, suffix=""):
            getattr(rnn, "weight_ih_l0" + suffix).copy_(t(_gates(params[prefix + "_W"]).T))
            getattr(rnn, "weight_hh_l0" + suffix).copy_(t(_gates(params[prefix + "_U"]).T))
            getattr(rnn, "bias_ih_l0" + suffix).copy_(t(_gates(params[prefix + "_b"])))
            getattr(rnn, "bias_hh_l0" + suffix).zero_()  # the tutorial has one bias per gate

        with torch.no_grad():
            if lstm_impl == "packed":
                self.rnn = nn.LSTM(n_in, dim, bidirectional=options.bidirectional)
                for prefix, suffix in zip(prefixes, ("", "_reverse")):
                    load(self.rnn, prefix, suffix)
                self.rnns = [self.rnn]
            else:
                self.rnns = [nn.LSTM(n_in, dim) for _ in prefixes]
                for rnn, prefix in zip(self.rnns, prefixes):
                    load(rnn, prefix)
            self.out = nn.Linear(variants.pooled_dim(options), options.ydim)
            self.out.weight.copy_(t(params["U"].T))
            self.out.bias.copy_(t(params["b"]))
        for module in self.rnns + [self.out]:
            module.eval()
            module.requires_grad_(False)

    def _states(self, emb, lengths_np):
        """The LSTM states ``(T, B, dirs * dim)`` at the real steps (anything
        elsewhere) and each direction's final state ``(B, dirs * dim)``."""
        torch = self.torch
        T, B = emb.shape[0], emb.shape[1]
        # A review of no token gets one (padding) step; its states are masked below.
        lengths = torch.from_numpy(np.maximum(lengths_np, 1))
        if self.lstm_impl == "packed":
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
            packed = pack_padded_sequence(emb, lengths, enforce_sorted=False)
            out, (h_n, _) = self.rnn(packed)
            h, _ = pad_packed_sequence(out, total_length=T)
            return h, torch.cat(list(h_n), dim=1)  # h_n: (dirs, B, dim)
        h_fwd, _ = self.rnns[0](emb)  # the padding after a review never reaches its steps
        last = (lengths - 1)[None, :, None].expand(1, B, h_fwd.shape[2])
        finals = [h_fwd.gather(0, last)[0]]
        states = [h_fwd]
        if len(self.rnns) > 1:
            # Each review reversed within its length (the padding stays after it); the
            # same gather puts the states back in time order.
            steps = torch.arange(T)[:, None]
            rev = torch.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)
            idx = rev[:, :, None].expand(T, B, emb.shape[2])
            h_rev, _ = self.rnns[1](emb.gather(0, idx))
            finals.append(h_rev.gather(0, last)[0])
            states.append(h_rev.gather(0, rev[:, :, None].expand_as(h_rev)))
        return torch.cat(states, dim=2), torch.cat(finals, dim=1)

    def probs(self, x, mask):
        torch, o = self.torch, self.options
        x, lengths_np = left_aligned(x, mask)
        xt = torch.from_numpy(x)
        emb = torch.nn.functional.embedding(xt, self.Wemb)
        if self.Wbigram is not None:
            real = np.arange(x.shape[0])[:, None] < lengths_np
            ids = bigram_ids(x, real, o.n_words, o.bigram_buckets)
            emb = emb + torch.nn.functional.embedding(torch.from_numpy(ids), self.Wbigram)
        h, finals = self._states(emb, lengths_np)
        lengths = torch.from_numpy(lengths_np)
        valid = (torch.arange(x.shape[0])[:, None] < lengths[None, :])[:, :, None]
        count = lengths.to(emb.dtype)[:, None]
        pooled = []
        if o.pooling in ("mean", "meanmax"):  # lstm.mean_pool: 0/0 for no token, as ours
            pooled.append(torch.where(valid, h, 0.0).sum(0) / count)
        if o.pooling in ("max", "meanmax"):  # variants.max_pool: -inf for no token
            pooled.append(torch.where(valid, h, float("-inf")).amax(0))
        if o.pooling == "last":  # variants.last_pool: zeros for no token
            pooled.append(torch.where(count > 0, finals, 0.0))
        if o.pool_embeddings:  # variants.bag_of_embeddings
            pooled.append(torch.where(valid, emb, 0.0).sum(0) / count.clamp(min=1))
        proj = torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0]
        if o.use_dropout:
            proj = proj * 0.5
        return torch.softmax(self.out(proj), dim=-1).numpy()


# ---------------------------------------------------------------------------
# The two sides, timed.
# ---------------------------------------------------------------------------
def run_ours(model, dataset, split, batch_size=None):
    """``lstm.py evaluate``'s classification: ``classify_split(model,
    lstm.load_model, dataset, split)``. Returns its dict and the seconds:
    ``load_s`` (``lstm.load_model``: reading and compiling the model),
    ``classify_s`` (the model's ``classify`` call over the sorted reviews),
    ``total_s`` (the whole call, the dataset's reading included)."""
    timing = {}

    def timed_load(m):
        start = time.perf_counter()
        options, f_pred_prob, classify = lstm.load_model(m)
        timing["load_s"] = time.perf_counter() - start

        def timed_classify(seqs, size=None):
            start = time.perf_counter()
            probs = classify(seqs, size)
            timing["classify_s"] = time.perf_counter() - start
            return probs
        return options, f_pred_prob, timed_classify

    start = time.perf_counter()
    c = evaluation.classify_split(model, timed_load, dataset, split, batch_size)
    timing["total_s"] = time.perf_counter() - start
    return c, timing


def sorted_reviews(x, options):
    """The reviews as ``classify_split`` hands them to ``classify``: sorted by
    length (stable), words beyond the vocabulary made 1. Returns ``(order, seqs)``."""
    order = sorted(range(len(x)), key=lambda n: len(x[n]))
    return order, imdb.remove_unk([x[n] for n in order], options.n_words)


def run_torch(torch_model, options, order, seqs, batch_size=None):
    """PyTorch on the minibatches ``classify`` makes (``batch_size`` reviews, by
    default the model's ``valid_batch_size``; ``variants.batcher``), under
    ``torch.no_grad()``. Returns the probabilities
    in the split's order and the seconds of the loop (batching included)."""
    import torch
    prepare = variants.batcher(options)
    start = time.perf_counter()
    probs = None
    with torch.no_grad():
        size = batch_size or options.valid_batch_size
        for _, index in lstm.get_minibatches_idx(len(seqs), size):
            x, mask, _ = prepare([seqs[t] for t in index], [0] * len(index), maxlen=None)
            batch = torch_model.probs(x, mask)
            if probs is None:
                probs = np.zeros((len(seqs), batch.shape[1]), dtype=batch.dtype)
            probs[index] = batch
    seconds = time.perf_counter() - start
    out = np.empty_like(probs)
    out[order] = probs
    return out, seconds


def max_difference(a, b):
    """The largest absolute difference; NaN where both are NaN counts as equal
    (a review of no token is 0/0 on both sides), NaN on one side only is inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isnan(a) & np.isnan(b)
    diff = np.where(both, 0.0, np.abs(a - b))
    return float(np.where(np.isnan(diff), np.inf, diff).max()) if diff.size else 0.0


def limited_dataset(path, split, limit, folder):
    """A copy of the dataset file holding the first ``limit`` reviews of
    ``split`` (the other split empty), in ``folder``; ``path`` when ``limit`` is 0."""
    if not limit:
        return path
    train, test = imdb.load_dataset_file(path)
    x, y = test if split == "test" else train
    part = (x[:limit], y[:limit])
    out = os.path.join(folder, "first%d-%s.pkl" % (limit, split))
    with open(out, "wb") as f:
        for data in ((part, ([], [])) if split == "train" else (([], []), part)):
            pickle.dump(data, f, protocol=2)
    return out


# ---------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, metavar="PATH",
                   help="the saved model (.npz, with its .json beside it): the tutorial's, "
                        "bigrams, bidirectional, mean/max/meanmax/last pooling (not "
                        "conv or stacked layers)")
    p.add_argument("--dataset", default=None, metavar="PATH",
                   help="preprocessed corpus (default: the model's own, from its options)")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which part of the dataset file to classify")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="classify the split's first N reviews only, for a quick run (0: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="reviews per minibatch, on both sides (default: the model's "
                        "valid_batch_size, as lstm.py evaluate)")
    p.add_argument("--repeats", type=int, default=1, metavar="K",
                   help="run ours then PyTorch's K times, alternating; best and median "
                        "are reported per side")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="PyTorch's threads (0: its default); for a one-core comparison "
                        "also set OPENBLAS_NUM_THREADS=1 and FUSED_LSTM_THREADS=1")
    p.add_argument("--torch-lstm", choices=TORCH_LSTMS, default="reversed",
                   help="how PyTorch skips the padding: reversed: each review reversed "
                        "within its length for the backward direction (a padded nn.LSTM "
                        "per direction, oneDNN); packed: pack_padded_sequence")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def summary(seconds, n):
    best, median = min(seconds), float(np.median(seconds))
    return dict(best_s=best, median_s=median, all_s=seconds,
                reviews_per_s_best=n / best if best else float("inf"),
                reviews_per_s_median=n / median if median else float("inf"))


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if (args.repeats < 1 or (args.batch_size is not None and args.batch_size < 1)
            or args.limit < 0 or args.torch_threads < 0):
        p.error("--repeats and --batch-size must be at least 1, --limit and --torch-threads "
                "0 or more")
    if args.json and os.path.abspath(args.json) in {
            os.path.abspath(f) for f in (args.model, model_paths(args.model)[0])}:
        p.error("--json %s would overwrite the model or its options file" % args.json)
    try:
        import torch
    except ImportError:
        p.error("PyTorch is not installed: pip install -r benchmarks/requirements.txt")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    folder = tempfile.mkdtemp(prefix="bench_evaluate")
    try:
        return bench(args, torch, folder)
    except DataError as exc:
        raise SystemExit("bench_evaluate.py: %s" % str(exc).splitlines()[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench(args, torch, folder):
    start = time.perf_counter()
    options, params = lstm.saved_model(args.model)
    why = unsupported(options)
    if why:
        raise DataError("%s: the PyTorch side does not build this model: %s"
                        % (args.model, why))
    torch_model = TorchModel(options, params, args.torch_lstm)
    torch_load_s = time.perf_counter() - start
    source = args.dataset or options.dataset
    dataset = limited_dataset(source, args.split, args.limit, folder)
    train, test = imdb.load_dataset_file(dataset)
    x, y = test if args.split == "test" else train
    if not x:
        raise DataError("%s: the %s split has no review" % (source, args.split))
    order, seqs = sorted_reviews(x, options)
    y = np.asarray(y, dtype=np.int64)

    fused_lstm.setup()
    print(describe())
    print("PyTensor %s (mode %s, OPENBLAS_NUM_THREADS=%s, fused LSTM threads %s, per-step "
          "GEMM: %s), PyTorch %s with %d threads (nn.LSTM %s, oneDNN %s)"
          % (pytensor.__version__, options.mode, os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
             getattr(fused_lstm, "threads", "?"), getattr(fused_lstm, "gemm_kernel", "?"),
             torch.__version__, torch.get_num_threads(),
             {"reversed": "per direction, the backward one on reversed reviews",
              "packed": "on packed sequences"}[args.torch_lstm],
             "on" if torch.backends.mkldnn.enabled else "off"))
    print("%s on %s (%s split, %d reviews%s), minibatches of %d%s"
          % (args.model, source, args.split, len(x),
             ", the first %d" % args.limit if args.limit else "",
             args.batch_size or options.valid_batch_size,
             ", padded to %d (%s, truncating %s)" % (options.pad_to, options.padding,
                                                   options.truncating)
             if options.pad_to else ""))

    ours_s, ours_load, ours_total, torch_s, diffs = [], [], [], [], []
    ours_probs = torch_probs = None
    for k in range(args.repeats):
        c, timing = run_ours(args.model, dataset, args.split, args.batch_size)
        ours_s.append(timing["classify_s"])
        ours_load.append(timing["load_s"])
        ours_total.append(timing["total_s"])
        tprobs, seconds = run_torch(torch_model, options, order, seqs, args.batch_size)
        torch_s.append(seconds)
        diffs.append(max_difference(c["probs"], tprobs))
        ours_probs, torch_probs = c["probs"], tprobs
        print("  repeat %d: ours %.3f s (model loaded in %.2f s), PyTorch %.3f s, "
              "max |probability difference| %.2e"
              % (k + 1, timing["classify_s"], timing["load_s"], seconds, diffs[-1]))

    n = len(x)
    ours_acc = float((ours_probs.argmax(axis=1) == y).mean())
    torch_acc = float((torch_probs.argmax(axis=1) == y).mean())
    diff = max(diffs)
    print("max |probability difference| %.2e (limit %.0e); accuracy ours %.4f, PyTorch %.4f"
          % (diff, TOLERANCE, ours_acc, torch_acc))
    ours, theirs = summary(ours_s, n), summary(torch_s, n)
    print("  %-8s %10s %12s %10s %12s" % ("", "best", "reviews/s", "median", "reviews/s"))
    for name, s in (("ours", ours), ("PyTorch", theirs)):
        print("  %-8s %8.3f s %12.0f %8.3f s %12.0f"
              % (name, s["best_s"], s["reviews_per_s_best"], s["median_s"],
                 s["reviews_per_s_median"]))
    ratio = theirs["best_s"] / ours["best_s"]
    ratio_median = theirs["median_s"] / ours["median_s"]
    print("  ratio (PyTorch's time / ours, > 1 = we are faster): %.2fx best, %.2fx median"
          % (ratio, ratio_median))
    print("  (classification only: ours loaded and compiled the model in %.2f s (best), "
          "PyTorch built it in %.2f s; %d repeat%s)"
          % (min(ours_load), torch_load_s, args.repeats, "s" if args.repeats > 1 else ""))

    failures = []
    if not diff <= TOLERANCE:
        failures.append("the class probabilities differ by up to %.2e (> %.0e)"
                        % (diff, TOLERANCE))
    if ours_acc != torch_acc:
        changed = np.flatnonzero(ours_probs.argmax(axis=1) != torch_probs.argmax(axis=1))
        failures.append("the accuracies differ (%.6f vs %.6f): %d reviews predicted "
                        "otherwise" % (ours_acc, torch_acc, len(changed)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, dataset=source, split=args.split, n=n,
                           limit=args.limit, repeats=args.repeats,
                           options=dataclasses.asdict(options),
                           ours=dict(ours, load_s=ours_load, total_s=ours_total,
                                     accuracy=ours_acc),
                           pytorch=dict(theirs, build_s=torch_load_s, accuracy=torch_acc,
                                        lstm=args.torch_lstm),
                           ratio=ratio, ratio_median=ratio_median,
                           max_prob_diff=diff, max_prob_diffs=diffs, tolerance=TOLERANCE,
                           agree=not failures,
                           pytensor=pytensor.__version__, mode=options.mode,
                           fused_threads=getattr(fused_lstm, "threads", None),
                           fused_gemm=getattr(fused_lstm, "gemm_kernel", None),
                           openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                           torch=torch.__version__, torch_threads=torch.get_num_threads(),
                           torch_onednn=bool(torch.backends.mkldnn.enabled),
                           machine=cpu_info(), cpu=describe()), f, indent=2)
            f.write("\n")
    if failures:
        raise SystemExit("bench_evaluate.py: PyTorch does not compute what the project "
                         "computes: " + "; ".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
