"""The parts of the LSTM sentiment tutorial that are not the tutorial itself.

``lstm.py``, ``imdb.py`` and ``imdb_preprocess.py`` (at the top of the
checkout) read like the deeplearning.net tutorial; this package holds what
they call: configuration and presets, the command line, model variants,
optimizers beyond the tutorial's, the training loop's state and checkpoints,
model files, prediction, evaluation and inspection, corpus readers, pre-trained vectors,
the fused Ops and the experiments' reporting. Each module has one job, none
imports ``lstm``, and importing one does no work (``pytensor_flags`` aside:
it sets PyTensor's flags, which must happen before PyTensor is imported).
"""
