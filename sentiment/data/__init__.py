"""The data side: raw-corpus readers (``corpus``), the restricted unpickler
(``pickles``), the Moses tokenizer's set-up (``moses``), pre-trained word
vectors (``embeddings``) and the corpus digests (``digests``). Imports only
:mod:`sentiment.common`: nothing of PyTensor, the kernels or the model.
"""
