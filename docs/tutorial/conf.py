"""Sphinx configuration of the tutorial page (``python docs/build.py`` builds it).

The page is a MyST notebook: MyST-NB runs its code cells in a Jupyter kernel
at every build, on the model ``python lstm.py`` trained, so its figures and
numbers are that model's. The kernel starts in this folder; ``TUTORIAL_ROOT``
(set here) tells it where the checkout is.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TUTORIAL_ROOT", str(ROOT))

project = "LSTM Networks for Sentiment Analysis, in PyTensor"
author = "the project's authors"
extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "furo"
html_title = "LSTM Networks for Sentiment Analysis"

nb_execution_mode = "force"            # every build runs every cell
nb_execution_timeout = 600             # a cell's limit in seconds (the whole test set takes ~20 s)
nb_execution_raise_on_error = True     # a failing cell fails the build
nb_merge_streams = True
# MathJax from its CDN; DOCS_MATHJAX (a path or URL) for a copy of your own, e.g. offline.
if os.environ.get("DOCS_MATHJAX"):
    mathjax_path = os.environ["DOCS_MATHJAX"]
