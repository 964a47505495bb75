"""Build the tutorial page: ``python docs/build.py [--model lstm_model.npz]``.

The page (``docs/tutorial/index.md``) is a MyST notebook whose code cells run
at every build, on a model trained by ``python lstm.py``; the HTML goes to
``docs/_build/html`` (open ``index.html``). Needs ``pip install -r
docs/requirements.txt`` on top of the project's requirements.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout, for sentiment.model.config
from sentiment.model.config import model_paths  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lstm_model.npz",
                        help="the trained model the page is computed from, with its .json and "
                             ".log.jsonl beside it (default: what python lstm.py writes)")
    parser.add_argument("--out", default=str(HERE / "_build" / "html"),
                        help="where the HTML goes (default: docs/_build/html)")
    return parser


def missing(model):
    """A one-line reason the page cannot be built from ``model``, or None."""
    options_json, log_jsonl = model_paths(model)
    for path, what in ((model, "model"), (options_json, "options file"),
                       (log_jsonl, "training log")):
        if not os.path.isfile(path):
            return ("%s: no such %s (train the page's model first: python lstm.py, "
                    "or give --model)" % (path, what))
    try:
        import myst_nb  # noqa: F401
    except ImportError:
        return "MyST-NB is not installed: pip install -r docs/requirements.txt"
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    problem = missing(args.model)
    if problem:
        print("docs/build.py: error: %s" % problem, file=sys.stderr)
        return 2
    os.environ["TUTORIAL_MODEL"] = os.path.abspath(args.model)
    if os.path.isfile(os.path.join(args.out, ".buildinfo")):  # an earlier build: no stale figure
        shutil.rmtree(args.out)
    from sphinx.cmd.build import build_main
    return build_main(["-W", "--keep-going", "-q", "-b", "html", "-d",
                       str(Path(args.out).parent / "doctrees"), str(HERE / "tutorial"), args.out])


if __name__ == "__main__":
    sys.exit(main())
