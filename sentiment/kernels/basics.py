"""What every fused Op shares: the Numba options (one fast-math flag, so that
every x86-64 target gives the same bits), the rational ``tanh`` of the
kernels, the dtype checks and the base of the Ops that have no gradient."""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import numba
import numpy as np
from numba.extending import overload
from pytensor.gradient import grad_not_implemented
from pytensor.graph.op import Op



# The one fast-math flag: "contract" (a * b + c may become one fused
# multiply-add, which every AVX2 CPU has, and LLVM forms the same ones for
# every x86-64 target). The others change results with the target: with
# "reassoc" and "nsz", the machine scheduler of znver3 or alderlake
# re-associated the backward's gate derivatives otherwise than that of haswell
# or znver4; with "arcp" and "afn", x / sqrt(y) became an estimate of
# 1 / sqrt(y) refined by a Newton step, whose instruction differs between
# Intel's AVX-512 targets (vrsqrt14ps) and the others (vrsqrtps). NaN and
# infinity keep their meaning: a NaN weight still reaches the cost.
_FASTMATH = {"contract"}
# error_model="numpy": a division never raises, which lets the loops vectorise.
_jit = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
# The optimizers' steps: IEEE arithmetic, each operation rounded as written.
_ieee_jit = dict(nogil=True, cache=True, error_model="numpy")


@numba.njit(**_jit)
def _tanh32(x):
    """tanh(x) as a [13/6] rational function, exact to 3.3e-7 (float32)."""
    # Clamp to [-9, 9] with comparisons, which let NaN through.
    x = np.float32(-9.0) if x < np.float32(-9.0) else x
    x = np.float32(9.0) if x > np.float32(9.0) else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def _tanh(x):
    """tanh in the kernels: the rational one for float32, the exact one otherwise."""
    return np.tanh(x)


@overload(_tanh, jit_options=_jit)
def _tanh_impl(x):
    if x == numba.types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)



_FLOATS = ("float32", "float64")


def _check_dtype(dtype):
    if str(dtype) not in _FLOATS:
        raise TypeError("fused LSTM: float32 or float64 only, not %s" % dtype)


def _check_float(name, var, dtype, ndim):
    if var.ndim != ndim:
        raise TypeError("fused LSTM: %s must have %d dimensions, not %d" % (name, ndim, var.ndim))
    if var.dtype != dtype:
        raise TypeError("fused LSTM: %s has dtype %s, expected %s" % (name, var.dtype, dtype))




class _Terminal(Op):
    """An Op with no gradient of its own: a gradient, or an optimizer's step."""

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
