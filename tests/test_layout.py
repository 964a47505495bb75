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
    """``{module name: path}`` of the top-level files and the package."""
    found = {name: os.path.join(ROOT, name + ".py") for name in SCRIPTS}
    for path in glob.glob(os.path.join(ROOT, "sentiment", "*.py")):
        name = os.path.basename(path)[:-3]
        found["sentiment" if name == "__init__" else "sentiment." + name] = path
    return found


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
from sentiment import fused_lstm
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
