"""``--device gpu`` timed: the tutorial's speed test, an epoch of ``--preset full``,
and the training update and prediction against PyTorch's cuDNN ``nn.LSTM``.

Run once on a machine with an NVIDIA GPU (after
``.venv/bin/pip install -r requirements-gpu.txt``, and for the PyTorch column
a CUDA build of PyTorch)::

    python benchmarks/bench_gpu.py                      # everything, ~15 min on a GPU
    python benchmarks/bench_gpu.py --skip-epochs        # only update / prediction
    python benchmarks/bench_gpu.py --json gpu.json

It prints the device (without a GPU, JAX runs on the CPU and the first line
says so), then:

1. the tutorial's own speed test, ``lstm.py --max-epochs 1 --test-size 1000
   --device gpu``: its ``sec/epochs`` (training only, compilations for new
   shapes included) and the whole command's seconds, beside the tutorial's
   8.3 s on a GTX 580 (Theano, 2015; the tutorial's documentation);
2. one epoch of ``--preset full --device gpu`` (25,000 reviews), the same way;
3. at ``benchmarks/bench_lstm.py``'s shapes (dim 128, n_words 10,000, no
   dropout, the tutorial's AdaDelta): the median ms of a training update and
   of a prediction, after a check that both compute the same cost and
   parameters, for the project on JAX and for PyTorch ``nn.LSTM`` on CUDA
   (cuDNN), when PyTorch sees a GPU.

Needs ``data/imdb.pkl`` for 1 and 2 (built from the archive as ``lstm.py``
does). Nothing here is compared against the CPU: ``bench_lstm.py`` does that.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import lstm  # noqa: E402  (first: sets the project's PyTensor flags)
import numpy as np  # noqa: E402

import bench_lstm  # noqa: E402
from sentiment.kernels import device  # noqa: E402
from sentiment.model.config import Config  # noqa: E402
from sentiment.kernels.machine import describe as describe_cpu  # noqa: E402

TUTORIAL_GTX580_S = 8.3  # the tutorial: "8.3 sec/epochs" on a GTX 580 (Theano, float32)


def run_epoch(label, extra, dataset):
    """One ``lstm.py`` epoch with ``--device gpu``: its sec/epochs and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(ROOT, "lstm.py"), "--device", "gpu",
               "--dataset", dataset, "--saveto", os.path.join(tmp, "m.npz"), *extra]
        print("\n%s: %s" % (label, " ".join(cmd[1:])), flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit("bench_gpu.py: %s failed:\n%s" % (label, done.stderr[-2000:]))
    per_epoch = float(re.search(r"with ([0-9.]+) sec/epochs", done.stdout).group(1))
    errors = [line for line in done.stdout.splitlines() if line.startswith("Train ")][-1]
    print("  %.1f s training (sec/epochs), %.1f s the whole command; %s"
          % (per_epoch, wall, errors))
    return dict(command=" ".join(cmd[1:]), sec_per_epoch=per_epoch, wall_s=wall,
                errors=errors, stderr_first_line=(done.stderr.splitlines() or [""])[0])


class ProjectGPU(bench_lstm.Project):
    """lstm.py's compiled functions with ``--device gpu``."""

    def __init__(self, params):
        options = Config(dim_proj=bench_lstm.DIM, n_words=bench_lstm.N_WORDS,
                         ydim=bench_lstm.YDIM, use_dropout=False, device="gpu")
        start = time.perf_counter()
        self.model = lstm.compile_model(options, {k: v.copy() for k, v in params.items()})
        self.compile_s = time.perf_counter() - start
        self.name, self.lr = "project-jax", np.float32(0.0)


class TorchCUDA(bench_lstm.Torch):
    """bench_lstm's PyTorch model on the GPU (``nn.LSTM`` runs cuDNN there)."""

    def __init__(self, params):
        super().__init__(params)
        self.name = "pytorch-cuda"
        for m in self.modules:
            m.cuda()
        self.opt = self.torch.optim.Adadelta(
            [p for m in self.modules for p in m.parameters() if p.requires_grad],
            lr=1.0, rho=0.95, eps=1e-6)

    def _cuda(self, *arrays):
        return [self.torch.from_numpy(a).cuda() for a in arrays]

    def update(self, x, mask, y):
        torch = self.torch
        x, mask, y = self._cuda(x, mask, y)
        self.opt.zero_grad(set_to_none=True)
        probs = self._probs(x, mask)
        cost = -torch.log(probs[torch.arange(len(y), device=y.device), y] + 1e-8).mean()
        cost.backward()
        self.opt.step()
        return cost.item()  # waits for the GPU, as the project's cost does

    def predict(self, x, mask):
        with self.torch.no_grad():
            return self._probs(*self._cuda(x, mask)).cpu().numpy()

    def params(self):
        for m in self.modules:
            m.cpu()
        try:
            return super().params()
        finally:
            for m in self.modules:
                m.cuda()


def torch_cuda():
    """PyTorch, if it is installed and sees a GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    # float32 products in float32, as the project's (PyTorch lets cuDNN use TF32).
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def bench_shapes(args):
    """Update and prediction at each shape: the project on JAX (and PyTorch on CUDA)."""
    torch = torch_cuda()
    if torch is None:
        print("\nPyTorch with CUDA not found: the project alone "
              "(pip install torch with CUDA for the cuDNN column)")
    results = []
    for T, B in args.shapes:
        print("\nT=%d, B=%d" % (T, B))
        params = lstm.init_params(Config(dim_proj=bench_lstm.DIM, n_words=bench_lstm.N_WORDS,
                                         ydim=bench_lstm.YDIM), np.random.default_rng(0))
        runners = [ProjectGPU(params)] + ([TorchCUDA(params)] if torch else [])
        bench_lstm.check_agreement(runners, T, B)
        ms, _ = bench_lstm.measure(runners, T, B, args.repeats, args.rounds)
        for r in runners:
            print("  %-14s update %8.2f ms   predict %8.2f ms" % (
                r.name, ms[r.name]["update"], ms[r.name]["predict"]))
        if torch:
            print("  (PyTorch's time / the project's: update %.2fx, predict %.2fx)" % (
                ms["pytorch-cuda"]["update"] / ms["project-jax"]["update"],
                ms["pytorch-cuda"]["predict"] / ms["project-jax"]["predict"]))
        results.append(dict(T=T, B=B, ms=ms))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default=os.path.join(ROOT, "data", "imdb.pkl"))
    p.add_argument("--shapes", nargs="+", type=bench_lstm.parse_shape,
                   default=[(100, 16), (400, 64)], metavar="TxB")
    p.add_argument("--repeats", type=int, default=24, help="timed calls per measure")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--skip-epochs", action="store_true",
                   help="only the update / prediction timings (no lstm.py runs)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    device.require_jax()
    import jax
    line = device.describe()
    torch = torch_cuda()
    print(line)
    print("JAX %s (%s); PyTorch CUDA: %s; %s" % (
        jax.__version__, jax.devices()[0], torch.cuda.get_device_name(0) if torch else "no",
        describe_cpu()))
    out = dict(device=line, jax=jax.__version__, cpu=describe_cpu(), epochs={})
    if not args.skip_epochs:
        out["epochs"]["tutorial"] = run_epoch(
            "The tutorial's speed test (the tutorial: %.1f s on a GTX 580)" % TUTORIAL_GTX580_S,
            ["--max-epochs", "1", "--test-size", "1000"], args.dataset)
        out["epochs"]["full"] = run_epoch("One epoch of --preset full",
                                          ["--preset", "full", "--max-epochs", "1"],
                                          args.dataset)
    out["shapes"] = bench_shapes(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
