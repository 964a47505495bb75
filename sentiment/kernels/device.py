"""Where a run computes: ``--device cpu`` (PyTensor's C backend, the default) or
``--device gpu`` (the same graphs compiled by PyTensor's JAX backend, on the GPU).

With ``--device gpu`` :func:`compile_mode` gives PyTensor's JAX mode, with
three changes that make the project's graphs run there:

- the fused Ops get their JAX functions (:func:`sentiment.kernels.jax_ops.register`);
- :class:`ShapeJAXLinker` compiles one JAX function per set of input shapes,
  from the graph with those shapes as constants: JAX needs concrete sizes
  (for ``jnp.zeros``, ``reshape``, ``split``, ``scan``), which PyTensor's
  graphs compute from the inputs' shapes. JAX would recompile for every new
  shape anyway; :func:`padded_steps` rounds the number of time steps up (the
  padding is masked, so it changes no output) so that few shapes occur;
- the dropout masks are drawn on the host, from the run's NumPy generator,
  by a small C-backend function (:class:`HostNoise`): the same draws as
  ``--device cpu``, and the generator's state is the checkpoint's.

On a machine without a GPU, JAX runs on the CPU, and one line says so.
JAX is optional: nothing here imports it until a JAX mode is asked for.
"""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import os
import sys
import threading
import warnings
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.replace import graph_replace
from pytensor.graph.rewriting.db import RewriteDatabaseQuery
from pytensor.graph.traversal import graph_inputs
from pytensor.link.jax.linker import JAXLinker
from pytensor.tensor.random.type import RandomType
from pytensor.tensor.shape import Shape, Shape_i

from sentiment.kernels import fused_graph
from sentiment.common.errors import DataError

INSTALL = ".venv/bin/pip install -r requirements-gpu.txt"
INSTALL_CPU = ".venv/bin/pip install -r requirements-jax.txt"
_lock = threading.Lock()
_announced = False


def require_jax():
    """Import JAX, or raise a one-line :class:`DataError` naming the install command."""
    try:
        import jax
    except ImportError:
        raise DataError("--device gpu needs JAX, which is not installed: %s (JAX on the CPU "
                        "only: %s)" % (INSTALL, INSTALL_CPU)) from None
    return jax


def describe():
    """One line: the device JAX computes on, e.g. ``device gpu: NVIDIA H200 (JAX 0.10.2)``,
    or ``device gpu: no GPU found, JAX runs on the CPU``."""
    jax = require_jax()
    if jax.default_backend() != "gpu":
        return "device gpu: no GPU found, JAX runs on the CPU"
    return "device gpu: %s (JAX %s)" % (jax.devices()[0].device_kind, jax.__version__)


def _setup_jax(out=None):
    """Once per process: register the Ops' JAX functions, keep float32 products
    in float32 (not TF32; ``JAX_DEFAULT_MATMUL_PRECISION`` set by the user wins),
    keep JAX's compilations in PyTensor's compile directory (unless
    ``JAX_COMPILATION_CACHE_DIR`` is set), allocate GPU memory as needed (unless
    ``XLA_PYTHON_CLIENT_PREALLOCATE`` is set), quieten JAX's notes on int64 and
    float64 values run in 32 bits, and print :func:`describe`'s line."""
    global _announced
    jax = require_jax()
    with _lock:
        if _announced:
            return
        from sentiment.kernels import jax_ops
        jax_ops.register()
        # Memory as needed, not 75 % of the GPU at start: runs can share a GPU
        # (compare_optimizers.py --jobs). Read when JAX first uses its backend.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if "JAX_DEFAULT_MATMUL_PRECISION" not in os.environ:
            jax.config.update("jax_default_matmul_precision", "highest")
        if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # compiled shapes kept on disk
            jax.config.update("jax_compilation_cache_dir",
                              os.path.join(pytensor.config.compiledir, "jax"))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        warnings.filterwarnings("ignore", message="Explicitly requested dtype")
        warnings.filterwarnings("ignore", message="Skipping Assert")
        print(describe(), file=out or sys.stderr)
        _announced = True


def _specialize(fgraph, shapes):
    """A JAX function of ``fgraph`` for inputs of these ``shapes``: a copy of the
    graph with every ``Shape``/``Shape_i`` of an input a constant, constants
    folded, then converted."""
    from pytensor.graph.rewriting.basic import NodeProcessingGraphRewriter, in2out
    from pytensor.link.jax.dispatch import jax_funcify  # imports JAX
    from pytensor.tensor.rewriting.basic import constant_folding
    graph = fgraph.clone()
    pairs = []
    for var, shape in zip(graph.inputs, shapes):
        for node, _ in list(graph.clients[var]):
            if isinstance(node.op, Shape_i):
                value = shape[node.op.i]
            elif isinstance(node.op, Shape):
                value = list(shape)
            else:
                continue
            pairs.append((node.outputs[0], pt.constant(np.asarray(value, node.outputs[0].dtype))))
    graph.replace_all(pairs, import_missing=True, reason="ShapeJAXLinker")
    # (Folding skips the nodes it cannot evaluate, such as JAX's shape tuples.)
    in2out(constant_folding, ignore_newtrees=True,
           failure_callback=NodeProcessingGraphRewriter.warn_ignore).rewrite(graph)
    return jax_funcify(graph, fgraph_name="jax_specialized_fgraph")


class ShapeJAXLinker(JAXLinker):
    """PyTensor's JAX linker, compiling the graph once per set of input shapes
    with those shapes as constants (see :func:`_specialize`)."""

    def fgraph_convert(self, fgraph, input_storage, storage_map, **kwargs):
        """Nothing to convert before the shapes are known (:meth:`jit_compile`),
        unless the graph has random generators (PyTensor's JAX linker swaps them)."""
        if any(isinstance(v, SharedVariable) and isinstance(v.type, RandomType)
               for v in fgraph.inputs):
            return super().fgraph_convert(fgraph, input_storage, storage_map, **kwargs)
        return None

    def jit_compile(self, fn):
        """``run(*inputs)``: the JAX function for the inputs' shapes, compiled at
        their first call, then called (``fn``, the unspecialized graph, is unused)."""
        import jax
        fgraph, compiled = self.fgraph, {}

        def run(*args):
            shapes = tuple(np.shape(a) for a in args)
            jitted = compiled.get(shapes)
            if jitted is None:
                jitted = compiled[shapes] = jax.jit(_specialize(fgraph, shapes))
            return jitted(*args)
        return run


def compile_mode(options):
    """The compile mode of a run: ``options.mode`` on the CPU, PyTensor's JAX
    mode (with :class:`ShapeJAXLinker`) with ``device == "gpu"``; both with the
    project's rewrites (:func:`sentiment.kernels.fused_graph.compile_mode`)."""
    if options.device != "gpu":
        return fused_graph.compile_mode(options.mode)
    _setup_jax()
    return fused_graph.compile_mode(
        Mode(ShapeJAXLinker(), RewriteDatabaseQuery(include=["fast_run", "jax"])))


def padded_steps(n):
    """``n`` time steps rounded up to 16 or to 4, 5, 6 or 7 times a power of two
    (at most a quarter more), so that few lengths need their own compilation."""
    if n <= 16:
        return 16
    unit = 1 << (int(n - 1).bit_length() - 3)
    return -(-n // unit) * unit


def pad_steps(arrays, n):
    """``arrays`` (time first) padded with zeros to ``n`` time steps."""
    return [np.pad(a, [(0, n - a.shape[0])] + [(0, 0)] * (a.ndim - 1)) for a in arrays]


def host_function(f):
    """``f(x, mask, ...)`` of a JAX mode, called with ``x`` and ``mask`` padded
    (:func:`padded_steps`) and returning NumPy arrays."""
    def run(x, mask, *rest):
        x, mask = pad_steps([x, mask], padded_steps(x.shape[0]))
        out = f(x, mask, *rest)
        return [np.asarray(o) for o in out] if isinstance(out, list) else np.asarray(out)
    return run


class HostNoise:
    """``--device gpu``: the training graph's random draws (``build_model``'s
    ``noise``, word dropout's ``word_keep`` and dropout's ``keep``) become inputs,
    drawn before each update by a C-backend function of the dropout generator,
    as ``--device cpu`` draws them. On the CPU it changes nothing.

    Build it after ``build_model`` and before the gradients: it replaces the
    model's ``cost`` and ``updates``. Then ``inputs`` (the draws' inputs)
    follow ``x, mask, y``, and :meth:`wrap` the compiled ``f_grad_shared``.
    """

    def __init__(self, model, options):
        self.inputs, self.f_draw, self.device = [], None, options.device
        self.time_major = []
        noise = model.get("noise") or OrderedDict()
        if options.device != "gpu" or not noise:
            return
        draws = list(noise.values())
        self.inputs = [v.type(name=k) for k, v in noise.items()]
        self.time_major = [k == "word_keep" for k in noise]
        (rng, next_rng), = model["updates"].items()
        # The draws' sizes depend on the parameters' shapes only: here zeros of
        # those shapes stand for the parameters, which JAX keeps on its device.
        shared = [v for v in graph_inputs(draws)
                  if isinstance(v, SharedVariable) and v is not rng]
        *own, next_rng = graph_replace(draws + [next_rng], {
            v: pt.zeros(v.get_value(borrow=True).shape, v.dtype) for v in shared},
            strict=False)
        self.f_draw = pytensor.function(
            [model["x"], model["mask"]], own, updates=[(rng, next_rng)],
            mode=fused_graph.compile_mode(options.mode), on_unused_input="ignore",
            name="f_draw_noise")
        model["cost"] = graph_replace(model["cost"], dict(zip(draws, self.inputs)))
        model["updates"] = OrderedDict()

    def wrap(self, f_grad_shared):
        """``f_grad_shared(x, mask, y) -> cost``: draws, pads and calls the compiled one."""
        if self.device != "gpu":
            return f_grad_shared

        def run(x, mask, y):
            noise = self.f_draw(x, mask) if self.f_draw is not None else []
            n = padded_steps(x.shape[0])
            x, mask = pad_steps([x, mask], n)
            noise = [pad_steps([a], n)[0] if t else a for a, t in zip(noise, self.time_major)]
            return np.asarray(f_grad_shared(x, mask, y, *noise))
        return run
