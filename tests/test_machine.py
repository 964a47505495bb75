"""sentiment.kernels.machine: what the benchmarks print and write beside their figures."""
import os

from sentiment.kernels import machine


def test_cpu_info_names_the_cpu_and_the_settings_that_change_the_figures(monkeypatch):
    for name in machine.ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUSED_LSTM_AVX512", "0")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    info = machine.cpu_info()
    assert info["env"] == {"FUSED_LSTM_AVX512": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert set(info["flags"]) <= set(machine.VECTOR_FLAGS)
    assert info["cores"] >= 1 and info["model"]
    line = machine.describe(info)
    assert line.startswith("CPU: %s (family " % info["model"])
    assert line.endswith("FUSED_LSTM_AVX512=0, ONEDNN_MAX_CPU_ISA=AVX2")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            text = f.read()
        if "cpu family" in text:  # x86 Linux
            assert info["family"] and info["model_number"]
            assert "family %s, model %s" % (info["family"], info["model_number"]) in line


def test_describe_says_when_no_setting_is_made(monkeypatch):
    for name in machine.ENV:
        monkeypatch.delenv(name, raising=False)
    assert machine.describe().endswith("variable set")
