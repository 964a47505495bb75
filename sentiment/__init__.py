"""The parts of the LSTM sentiment tutorial that are not the tutorial itself.

``lstm.py``, ``imdb.py`` and ``imdb_preprocess.py`` (at the top of the
checkout) read like the deeplearning.net tutorial; this package holds what
they call, in layers, each importing only the layers before it:

- :mod:`sentiment.common`: errors, atomic files, the wording of messages;
- :mod:`sentiment.data`: corpus readers, pickles, the tokenizer, pre-trained
  vectors, digests;
- :mod:`sentiment.kernels`: the fused Ops and their C kernel, the compile
  mode, the hand-off threads, the JAX path and the device choice;
- :mod:`sentiment.model`: options and presets, the command line, variants,
  optimizers, training and checkpoints, model files, the summary;
- :mod:`sentiment.explain`: which words moved a prediction;
- :mod:`sentiment.commands`: ``lstm.py predict``, ``evaluate``, ``inspect``;
- :mod:`sentiment.experiments`: the comparisons, tuning, statistics, parallel
  runs, tables and figures of the experiment scripts.

Each module has one job, none imports ``lstm``, and importing one does no
work (``kernels.pytensor_flags`` aside: it sets PyTensor's flags, which must
happen before PyTensor is imported).
"""
