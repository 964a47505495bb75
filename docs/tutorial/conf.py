"""Sphinx configuration of the tutorial page (``python docs/build.py`` builds it).

The page is a MyST notebook: MyST-NB runs its code cells in a Jupyter kernel
at every build, on the model ``python lstm.py`` trained, so its figures and
numbers are that model's. The kernel starts in this folder; ``TUTORIAL_ROOT``
(set here) tells it where the checkout is.

The API reference (``api.md``) is autodoc + numpydoc + autosummary: autosummary
writes one page per module into ``api/`` (git-ignored, rewritten at each build,
so a module added, removed or moved into a subpackage needs no edit here).
"""
import logging
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(os.environ.setdefault("TUTORIAL_ROOT", str(Path(__file__).resolve().parents[2])))
sys.path.insert(0, str(ROOT))  # lstm, imdb, imdb_preprocess and sentiment/, for autodoc

project = "LSTM Networks for Sentiment Analysis, in PyTensor"
author = "the project's authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "furo"
html_title = "LSTM Networks for Sentiment Analysis"
templates_path = ["_templates"]
exclude_patterns = ["_templates"]

nb_execution_mode = "force"            # every build runs every cell
nb_execution_timeout = 600             # a cell's limit in seconds (the whole test set takes ~20 s)
nb_execution_raise_on_error = True     # a failing cell fails the build
nb_merge_streams = True
# MathJax from its CDN; DOCS_MATHJAX (a path or URL) for a copy of your own, e.g. offline.
if os.environ.get("DOCS_MATHJAX"):
    mathjax_path = os.environ["DOCS_MATHJAX"]

# The API reference. The generated pages go first, so none of a module that is gone survives.
GENERATED = Path(__file__).resolve().parent / "api"
shutil.rmtree(GENERATED, ignore_errors=True)
autosummary_generate = True            # api.md's autosummary writes api/<module>.rst
autosummary_imported_members = False   # a name is documented where it is defined, once
autodoc_member_order = "bysource"      # in the order the file reads
autodoc_typehints = "none"             # the docstrings' Parameters give the types
numpydoc_show_class_members = False    # autodoc lists the members; numpydoc's tables would repeat them
numpydoc_class_members_toctree = False
# autodoc imports lstm, hence PyTensor, in this process, where MyST-NB logs INFO: PyTensor's INFO
# lines about its config ("Suppressed KeyError ...") are noise there.
logging.getLogger("pytensor.configparser").setLevel(logging.WARNING)


def module_sections_as_rubrics(app, what, name, obj, options, lines):
    """A module docstring's numpydoc sections (``References``, ``Examples``) as rubrics.

    numpydoc formats the docstrings of functions and classes, not of modules: there a
    ``References`` underlined with dashes would be a section of the page, and every member
    documented after it would sit inside that section.
    """
    if what != "module":
        return
    for i in range(len(lines) - 1):
        title, underline = lines[i], lines[i + 1]
        if (title.strip() and not title[0].isspace() and len(underline) >= len(title.rstrip())
                and set(underline.strip()) == {"-"}):
            lines[i], lines[i + 1] = ".. rubric:: %s" % title.strip(), ""


def setup(app):
    app.connect("autodoc-process-docstring", module_sections_as_rubrics)
