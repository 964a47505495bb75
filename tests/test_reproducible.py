"""The same seed and data give the same bits: at any thread count, with any
OpenBLAS kernel, with Numba compiling for another CPU, with or without the
AVX-512 kernel, on any x86-64 CPU with AVX2 and FMA (the digest below is
committed: CI on another CPU checks it)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import synthetic_corpus, write_corpus
from sentiment.kernels.fused_lstm import PACKED_KERNEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# sentiment.model.modelfile.params_digest of the parameters RUN trains (below), as
# computed on an AMD EPYC (AVX-512) and meant to hold on every x86-64 CPU with
# AVX2 and FMA. A change of the model's arithmetic changes it on purpose: then
# update it here, and say so.
EXPECTED_DIGEST = "e1c49047aff52e072c8c33f36ec4401be7f5f5867c6e10af497c4b0a2bcf7690"
VARIANTS_DIGEST = "8b1f89d2714d834e9d2e405c695eb6672d1f86fc4911024bd78d104316927251"  # VARIANTS, below

# Thirty epochs of a small model: training minibatches of 16 (the small-batch
# schedule of the fused Ops) and evaluation minibatches of 40 (rows shared out
# between threads), with every kind of sum of the default model in it.
RUN = r"""
import json, sys
import lstm
from sentiment.kernels import fused_lstm
from sentiment.model.config import Config
options = Config(dataset=sys.argv[1], saveto="", dim_proj=24, n_words=60, max_epochs=30,
                 batch_size=16, valid_batch_size=40, validFreq=10, maxlen=0,
                 test_size=0, valid_portion=0.2, dispFreq=1000)
result = lstm.train_lstm(options, out=open("/dev/null", "w"))
print(json.dumps(dict(digest=result["params_sha256"], kernel=fused_lstm.gemm_kernel,
                      threads=fused_lstm.threads, test_err=result["test_err"])))
"""

SETTINGS = {
    "1 thread": {"FUSED_LSTM_THREADS": "1"},
    "2 threads": {"FUSED_LSTM_THREADS": "2"},
    "3 threads": {"FUSED_LSTM_THREADS": "3"},
    "OpenBLAS Sandybridge kernel": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "OpenBLAS's own choice": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
    "Numba for haswell": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CACHE_DIR": "{tmp}/numba"},
    # Other CPUs' code generation (their instructions and scheduling models): an
    # AVX2 AMD and an AVX2 Intel CPU, and an Intel AVX-512 one (below).
    "Numba for znver3": {"NUMBA_CPU_NAME": "znver3", "NUMBA_CACHE_DIR": "{tmp}/numba"},
    "Numba for alderlake": {"NUMBA_CPU_NAME": "alderlake", "NUMBA_CACHE_DIR": "{tmp}/numba"},
    "Numba for skylake-avx512": {"NUMBA_CPU_NAME": "skylake-avx512",
                                 "NUMBA_CACHE_DIR": "{tmp}/numba"},
    "AVX2 kernel even with AVX-512": {"FUSED_LSTM_AVX512": "0"},
}


def run(corpus, tmp_path, changes):
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.format(tmp=tmp_path)
    done = subprocess.run([sys.executable, "-c", RUN, corpus], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("repro") / "corpus.pkl"
    write_corpus(path, *synthetic_corpus(400, 80, seed=5))
    return str(path)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    return run(corpus, tmp_path_factory.mktemp("ref"), {})


def test_the_digest_is_the_committed_one(reference):
    if not reference["kernel"].startswith(PACKED_KERNEL):
        pytest.skip("the fused Ops use the BLAS here (%s): its sums depend on the CPU"
                    % reference["kernel"])
    assert reference["test_err"] < 0.2  # it learnt something: the digest is of a real run
    assert reference["digest"] == EXPECTED_DIGEST


# The variants of the presets: a convolution, two bidirectional layers, bigrams, mean and max
# pooling, Adam with clipping, word dropout and a weight average.
VARIANTS = r"""
import json, sys
import lstm
from sentiment.model.config import Config
options = Config(dataset=sys.argv[1], saveto="", dim_proj=12, n_words=60, max_epochs=3,
                 batch_size=40, valid_batch_size=40, validFreq=5, maxlen=0, test_size=0,
                 valid_portion=0.2, dispFreq=1000, conv_filters=8, layers=2, bidirectional=True,
                 bigram_buckets=64, pooling="meanmax", optimizer="adam", lrate=0.01, clip_c=5.0,
                 word_dropout=0.1, ema=0.9, pad_to=30)
print(json.dumps(dict(digest=lstm.train_lstm(options, out=open("/dev/null", "w"))["params_sha256"])))
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_variants_too_at_any_thread_count(threads, corpus, tmp_path):
    env = dict(os.environ, FUSED_LSTM_THREADS=threads)
    outs = []
    for avx512 in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", VARIANTS, corpus], cwd=ROOT,
                              env=dict(env, FUSED_LSTM_AVX512=avx512), capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outs.append(json.loads(done.stdout.strip().splitlines()[-1])["digest"])
    assert outs[0] == outs[1] == VARIANTS_DIGEST


AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}  # skylake-avx512's


def host_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return set(next((line.split(":", 1)[1].split() for line in f
                             if line.startswith("flags")), []))
    except OSError:
        return set()


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_same_bits_whatever_the_threads_blas_and_numba_target(setting, corpus, reference,
                                                                   tmp_path):
    if "avx512" in setting and not AVX512 <= host_flags():
        pytest.skip("this CPU cannot run code compiled for AVX-512 (%s)" % setting)
    got = run(corpus, tmp_path, SETTINGS[setting])
    assert got["digest"] == reference["digest"], setting
