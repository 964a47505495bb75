"""The project's PyTensor defaults, set when this module is imported.

Import it before PyTensor (``lstm.py`` and every module of this package that
uses PyTensor do): PyTensor reads ``PYTENSOR_FLAGS`` once, when it is first
imported. This is the one module whose import changes something, by design.
"""
import glob
import os
import sys

_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def have_openblas():
    """Whether an OpenBLAS shared library is in the linker's usual folders.

    Reads folder listings only (``ctypes.util.find_library`` would run
    ``ldconfig`` and, when nothing is found, the C compiler).
    """
    dirs = list(_LIB_DIRS) + os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    for conf in glob.glob("/etc/ld.so.conf.d/*.conf"):
        try:
            with open(conf, encoding="utf-8", errors="replace") as f:
                dirs += [line.strip() for line in f if line.strip().startswith("/")]
        except OSError:
            pass
    return any(glob.glob(os.path.join(d, "libopenblas*.so*"))
               + glob.glob(os.path.join(d, "*", "libopenblas*.so*"))
               for d in dirs if d and os.path.isdir(d))


def configure_pytensor():
    """Default PyTensor flags for this project, before PyTensor is imported.

    float32 (the tutorial's precision), the C backend (``mode=CVM``: see
    ``docs/speed.md`` for the measurements behind this choice) and, for it,
    the system OpenBLAS when there is one: a pip-installed PyTensor does not
    find it by itself and falls back to a much slower GEMM. Flags the user set
    in ``PYTENSOR_FLAGS`` win. When PyTensor was imported first (which read
    its flags already), the same defaults are set on ``pytensor.config``:
    otherwise the model would silently run in float64, about 4x slower.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    given = {item.split("=")[0].strip() for item in flags.split(",") if "=" in item}
    defaults = {"floatX": "float32", "mode": "CVM"}
    if have_openblas():
        defaults["blas__ldflags"] = "-lopenblas"
    chosen = {k: v for k, v in defaults.items() if k not in given}
    if "pytensor" in sys.modules:
        for name, value in chosen.items():
            setattr(sys.modules["pytensor"].config, name, value)
    elif chosen:
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            filter(None, [flags] + ["%s=%s" % kv for kv in chosen.items()]))


configure_pytensor()
