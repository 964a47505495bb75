"""What a measurement ran on: the CPU model, its vector extensions, the thread settings
(printed by the benchmarks and ``reproduce.py`` beside their figures)."""
import os
import platform

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl")
ENV = ("FUSED_LSTM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
       "OPENBLAS_L2_SIZE",
       # the instructions the kernels may use: the project's, Numba's, PyTorch's
       "FUSED_LSTM_AVX512", "FUSED_LSTM_GEMM", "NUMBA_CPU_NAME", "ONEDNN_MAX_CPU_ISA",
       "ATEN_CPU_CAPABILITY")


def cpu_info():
    """``{"model", "family", "model_number", "flags", "cores", "env"}`` of this
    machine (Linux's /proc/cpuinfo; the platform's name elsewhere)."""
    info = {"model": platform.processor() or platform.machine(), "family": "",
            "model_number": "", "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines()
                          if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("model name", info["model"])
        info["family"] = fields.get("cpu family", "")
        info["model_number"] = fields.get("model", "")
        flags = set(fields.get("flags", "").split())
        info["flags"] = [f for f in VECTOR_FLAGS if f in flags]
    except OSError:
        pass
    info["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["env"] = {name: os.environ[name] for name in ENV if name in os.environ}
    return info


def describe(info=None):
    """One line for a benchmark's output."""
    info = info or cpu_info()
    env = (", ".join("%s=%s" % kv for kv in info["env"].items())
           or "no FUSED_LSTM_, OMP_, OPENBLAS_, NUMBA_CPU_NAME, ONEDNN_ or ATEN_ variable set")
    return "CPU: %s (family %s, model %s), %s cores, %s; %s" % (
        info["model"], info["family"] or "?", info.get("model_number") or "?", info["cores"],
        " ".join(info["flags"]), env)
