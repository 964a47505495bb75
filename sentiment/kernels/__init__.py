"""The compiled kernels and how they run: PyTensor's flags (``pytensor_flags``),
the fused Ops of the LSTM, the optimizer steps, the embedding, the pooling
and the products (``fused_lstm`` and the modules it gathers, with their C
kernel ``fused_lstm_gemm.c``), the compile mode and its graph rewrites
(``fused_graph``), AdaDelta by rows (``embedding_rows``), the hand-off
threads (``handoff``), the JAX functions and the device choice (``jax_ops``,
``device``), and the CPU facts benchmarks print (``machine``). Imports only
:mod:`sentiment.common`.
"""
