"""The fused Adam step (``sentiment.model.optimizers.adam``) against the same rule in PyTensor.

Builds a model's parameters (``--preset``, default ``full``: Adam, 20.9 M
parameters, 16.8 M of them the bigram table), gives them one random gradient,
and times, in rounds that alternate between the two, ``f_update`` of
``sentiment.model.optimizers.adam`` (one ``sentiment.kernels.fused_lstm.FusedStep`` pass per
parameter) and of the same rule written as PyTensor element-wise expressions
(PyTensor's C loop: what ``adam`` was before the fused step). It first checks
that both give the same parameters after one step, then prints medians and
their ratio.

    python benchmarks/bench_optimizer_step.py
    python benchmarks/bench_optimizer_step.py --bigram-buckets 0    # without the bigrams

Ratios above 1 mean the fused step is faster.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import lstm  # noqa: E402  (first: sets the project's PyTensor flags)
import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from sentiment.model.config import PRESET_DIR, Config, read_config_file  # noqa: E402
from sentiment.kernels import fused_graph  # noqa: E402
from sentiment.model.optimizers import adam, zeros_like_params  # noqa: E402


def graph_adam(lr, tparams, grads, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """``f_update`` of Adam as element-wise PyTensor expressions."""
    m = zeros_like_params(tparams, "graph_m")
    v = zeros_like_params(tparams, "graph_v")
    t = pytensor.shared(lstm.numpy_floatX(0.0), name="graph_t")
    t_new = t + 1.0
    fix1 = 1.0 - pt.constant(lstm.numpy_floatX(beta1)) ** t_new
    fix2 = 1.0 - pt.constant(lstm.numpy_floatX(beta2)) ** t_new
    new = []
    for p, g, m_, v_ in zip(tparams.values(), grads, m, v):
        m_t = beta1 * m_ + (1.0 - beta1) * g
        v_t = beta2 * v_ + (1.0 - beta2) * g ** 2
        new += [(m_, m_t), (v_, v_t),
                (p, p - lr * (m_t / fix1) / (pt.sqrt(v_t / fix2) + epsilon))]
    return pytensor.function([lr], [], updates=new + [(t, t_new)], name="graph_adam")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="full", help="the model's preset (presets/NAME.json)")
    parser.add_argument("--bigram-buckets", type=int, default=None,
                        help="the bigram table's rows (default: the preset's; 0: none)")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps of each")
    args = parser.parse_args(argv)
    values = read_config_file(os.path.join(PRESET_DIR, args.preset + ".json"))
    if args.bigram_buckets is not None:
        values["bigram_buckets"] = args.bigram_buckets
    options = Config.from_dict(dict(values, ydim=2, optimizer="adam", weight_decay=0.0))
    rng = np.random.default_rng(0)
    params = lstm.init_params(options, rng)
    copies = [lstm.init_tparams(params), lstm.init_tparams(params)]
    grads = lstm.init_tparams({k + "_grad": (1e-3 * rng.standard_normal(v.shape)).astype(v.dtype)
                               for k, v in params.items()})
    lr = pt.scalar("lr", dtype=pytensor.config.floatX)
    x = pt.scalar("unused")
    # The project's compile mode, as training uses: the step writes over p, m and v.
    f_grad_shared, fused, _ = adam(lr, copies[0], list(grads.values()), [x], x,
                                   mode=fused_graph.compile_mode(pytensor.config.mode))
    f_grad_shared(0.0)  # stores the gradients where adam's f_update reads them
    graph = graph_adam(lr, copies[1], list(grads.values()))
    step = np.float32(0.001)
    fused(step)
    graph(step)
    for name in params:
        np.testing.assert_allclose(copies[0][name].get_value(), copies[1][name].get_value(),
                                   rtol=1e-5, atol=1e-8, err_msg=name)
    times = {"fused": [], "graph": []}
    for _ in range(args.repeats):
        for name, f in (("fused", fused), ("graph", graph)):
            start = time.perf_counter()
            f(step)
            times[name].append(time.perf_counter() - start)
    size = sum(v.size for v in params.values())
    fused_ms, graph_ms = (1e3 * np.median(times[k]) for k in ("fused", "graph"))
    print("Adam step, %s preset, %d bigram buckets (%s values): same parameters after one "
          "step" % (args.preset, options.bigram_buckets, "{:,}".format(size)))
    print("fused %.2f ms, PyTensor graph %.2f ms (medians of %d alternating): %.2fx"
          % (fused_ms, graph_ms, args.repeats, graph_ms / fused_ms))


if __name__ == "__main__":
    main()
