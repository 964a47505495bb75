"""The project's layout: no import cycles, and importing does no work."""
import ast
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("lstm", "imdb", "imdb_preprocess", "compare_optimizers", "run_variants")


def project_modules():
    """``{module name: path}`` of the top-level files and the package (subpackages too)."""
    found = {name: os.path.join(ROOT, name + ".py") for name in SCRIPTS}
    for path in glob.glob(os.path.join(ROOT, "sentiment", "**", "*.py"), recursive=True):
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


#: The package's layers, lowest first: a module imports only from its own layer or lower ones
#: (so nothing of the kernels, the model or above reaches the data side, and nothing upwards).
LAYERS = ["common", "data", "kernels", "model", "explain", "commands", "experiments"]


def layer_of(module):
    """The index in LAYERS of a module of the package; None for the package itself."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def imports_of(path, modules):
    """The project modules ``path`` imports, anywhere in the file (functions too)."""
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
        out.update(n for n in names if n in modules)
    return out


def test_no_import_cycles_and_the_package_never_imports_the_scripts():
    modules = project_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    for name, deps in graph.items():
        if name.startswith("sentiment"):
            assert not deps & {"lstm", "compare_optimizers", "run_variants"}, name
    # Depth-first search for a cycle.
    state = {}

    def visit(name, path):
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_package_is_its_layers_and_each_imports_only_from_below():
    modules = project_modules()
    package = [m for m in modules if m.startswith("sentiment.")]
    assert {m.split(".")[1] for m in package} == set(LAYERS)   # no module outside a layer
    assert all(m.count(".") == 2 or m in ("sentiment." + x for x in LAYERS) for m in package)
    for module in package:
        for dep in imports_of(modules[module], modules):
            if dep.startswith("sentiment.") and dep.count(".") >= 2:
                assert layer_of(dep) <= layer_of(module), "%s imports %s, a layer above" % (
                    module, dep)
    # The data side reads files with NumPy alone: neither PyTensor nor Numba.
    for module in package:
        if layer_of(module) <= LAYERS.index("data"):
            tree = ast.parse(open(modules[module], encoding="utf-8").read())
            imported = {a.name.split(".")[0] for node in ast.walk(tree)
                        if isinstance(node, ast.Import) for a in node.names}
            imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                         if isinstance(node, ast.ImportFrom) and node.module}
            assert not imported & {"pytensor", "numba", "llvmlite", "jax"}, module


def test_no_module_of_the_kernels_passes_600_lines():
    # The fused Ops live by family in modules of their own (fused_lstm gathers them).
    for module, path in project_modules().items():
        if module.startswith("sentiment.kernels"):
            n = sum(1 for _ in open(path, encoding="utf-8"))
            assert n <= 600, "%s: %d lines" % (module, n)


def test_compare_optimizers_and_run_variants_import_no_private_name_of_each_other():
    for path in ("compare_optimizers.py", "run_variants.py"):
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in ("compare_optimizers", "run_variants"), path
                assert not any(a.name.startswith("_") for a in node.names), path


IMPORT_CHECK = r"""
import subprocess, sys
import pytensor  # its own import probes the C++ compiler: not ours to count
calls = []
real = subprocess.Popen.__init__
def record(self, *args, **kwargs):
    calls.append(args[0] if args else kwargs.get("args"))
    return real(self, *args, **kwargs)
subprocess.Popen.__init__ = record
import lstm, compare_optimizers, run_variants, imdb_preprocess
from sentiment.kernels import fused_lstm
assert not calls, calls
assert not fused_lstm._ready and fused_lstm._PACKED_GEMM is None  # built on first use only
import numpy as np
import pytensor.tensor as pt
z = pt.matrix()
f = pytensor.function([z], pt.special.softmax(z, axis=-1))
ops = [type(node.op).__name__ for node in f.maker.fgraph.apply_nodes]
assert "Softmax" in ops, ops  # the project's rewrite does not touch other graphs
print("ok")
"""


def test_importing_the_project_runs_nothing_and_rewrites_nothing_else():
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(project_modules()))
def test_no_function_longer_than_a_screen(name):
    """At most ~80 lines a function (argparse definitions aside)."""
    tree = ast.parse(open(project_modules()[name], encoding="utf-8").read())
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 80
            and not (node.name.startswith("add_") and node.name.endswith("_args"))]
    assert not long, long
