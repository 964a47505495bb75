"""The model side, beyond ``lstm.py``: every option and preset (``config``), the
command-line flags (``cli``), the variants (``variants``), more optimizers
(``optimizers``), the training loop and checkpoints (``training``), model
files (``modelfile``) and the summary table (``summary``). Imports
:mod:`sentiment.common`, :mod:`sentiment.data` and :mod:`sentiment.kernels`.
"""
