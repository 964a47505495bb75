"""Fused PyTensor Ops for the tutorial's model: the LSTM recurrence, the
embedding lookup's gradient and the optimizers' parameter step.

``lstm.lstm_layer`` writes the recurrence as a ``scan`` over time steps, the
tutorial's formulation and this project's reference (``--lstm-impl scan``).
``scan`` pays, at every step, for a generic loop, one small op per gate
non-linearity, and, in the gradient, a recomputation of ``h U + x`` (see the
docs/speed.md). Here the same function is two Ops, each one pass over the
whole sequence in a Numba kernel (``--lstm-impl fused``, the default):

- :class:`LSTMForward` ``(x, mask, W, U, b) -> (h, c, gates)``: the input
  projection ``x W + b`` a chunk of steps at a time, then per step one GEMM
  ``h_{t-1} U`` (the small kernel of ``fused_lstm_gemm.c``) and, for each
  review, one vectorised loop for the four gates and one for the states; it
  keeps the gate activations for the backward pass.
- :class:`LSTMBackward` ``(x, mask, W, U, h, c, gates, dh, dc) -> (dx, dW,
  dU, db)``: per step one vectorised loop per review for the gates'
  derivatives and one GEMM ``dz_t U^T`` (``U^T`` packed once); ``dx``,
  ``dW``, ``dU`` and ``db`` as large GEMMs over chunks of steps. An empty
  ``dc`` stands for zeros (the cost of the tutorial's model uses ``h`` only).

From 8 reviews per thread the batch's rows are shared out between threads;
a smaller batch runs the recurrence in this thread while a helper thread
computes the large GEMMs in step with it (see "Threads" below). Prediction
has its own Ops, which keep nothing for a gradient (``fused_graph``).

The gate non-linearities use a rational approximation of ``tanh`` (the one
Eigen uses for float32; ``sigmoid(x) = (1 + tanh(x / 2)) / 2``), at most
3.3e-7 from the exact value, which the compiler vectorises; float64 inputs use
the exact ``tanh``. Two smaller Ops remove the other slow steps of a training
update: :class:`Embedding` (whose gradient adds rows in a compiled loop rather
than with NumPy's ``add.at``) and :class:`FusedStep` (AdaDelta's or
RMSProp's parameter step in one vectorised pass); :class:`MaskedMean` does
the tutorial's mean pooling in one pass. The Ops' large arrays come from a
pool of buffers that stay mapped (see "Recycled arrays"), and the classifier's
softmax is inlined (see the end). ``tests/test_fused_lstm.py`` checks every
Op against the ``scan``/PyTensor reference and NumPy.

This module gathers the Ops, which live by family in their own modules:
:mod:`~sentiment.kernels.lstm_ops` (the LSTM's kernels and Ops),
:mod:`~sentiment.kernels.step_ops` (the optimizers' steps),
:mod:`~sentiment.kernels.layer_ops` (the embedding, the mean pooling, the
products), on :mod:`~sentiment.kernels.gemm` (the products inside the
kernels and :func:`setup`), :mod:`~sentiment.kernels.scheduling` (threads and
recycled buffers) and :mod:`~sentiment.kernels.basics` (Numba's options, the
``tanh``, the checks). Any other name, the modules' state included
(``gemm_kernel``, ``threads``), is looked up in them when asked for
(``fused_lstm.gemm_kernel`` is ``gemm.gemm_kernel`` at that moment); to change
one, set it on the module that holds it.

Axes: ``x`` is ``(n_timesteps, n_samples, n_in)``, ``mask`` is
``(n_timesteps, n_samples)``, ``W`` is ``(n_in, 4 dim)``, ``U`` is
``(dim, 4 dim)``, ``b`` is ``(4 dim,)``; inside, the projection ``xw`` is
``(n_timesteps, n_samples, 4 dim)``, gates in the tutorial's order i, f, o, c.
"""

from sentiment.kernels import basics, gemm, layer_ops, lstm_ops, scheduling, step_ops
from sentiment.kernels.gemm import packed, setup
from sentiment.kernels.layer_ops import (Dot, Embedding, EmbeddingGrad, MaskedMean, MaskedMeanGrad,
                                         dot, embedding, in_blocks, masked_mean)
from sentiment.kernels.lstm_ops import (LSTMBackward, LSTMForward, lstm, lstm_backward_arrays,
                                        lstm_forward, lstm_forward_arrays, lstm_predict_arrays)
from sentiment.kernels.step_ops import (FusedStep, RunningAverage, adadelta_step, adam_step,
                                        rmsprop_step)

__all__ = ["Dot", "Embedding", "EmbeddingGrad", "FusedStep", "LSTMBackward", "LSTMForward",
           "MaskedMean", "MaskedMeanGrad", "RunningAverage", "adadelta_step", "adam_step", "dot",
           "embedding", "in_blocks", "lstm", "lstm_backward_arrays", "lstm_forward",
           "lstm_forward_arrays", "lstm_predict_arrays", "masked_mean", "packed",
           "rmsprop_step", "setup"]

_PARTS = (lstm_ops, step_ops, layer_ops, gemm, scheduling, basics)


def __getattr__(name):
    """Any other name of the parts, read when asked for (their state changes)."""
    for part in _PARTS:
        if name in vars(part):
            return vars(part)[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
