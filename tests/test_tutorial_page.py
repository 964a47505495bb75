"""The tutorial page (docs/tutorial/index.md) includes code from the project's
files: every ``literalinclude`` must name a file, a function and the lines
that exist there, so that the page shows the code that runs. (Building the
page runs its cells on a trained model: ``python docs/build.py``, in CI.)"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "tutorial" / "index.md"
INCLUDE = re.compile(r"```\{literalinclude\} (\S+)\n((?::[\w-]+:.*\n)*)```")


def includes():
    """(path, options) of each literalinclude of the page."""
    found = []
    for path, opts in INCLUDE.findall(PAGE.read_text()):
        options = dict(re.findall(r":([\w-]+):[ ]?(.*)", opts))
        found.append(((PAGE.parent / path).resolve(), options))
    return found


def pyobject_source(path, name):
    """The source lines of the top-level function ``name`` of ``path``."""
    text = path.read_text()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return text.splitlines()[node.lineno - 1 - len(node.decorator_list):node.end_lineno]
    return None


def test_the_page_includes_code():
    assert len(includes()) >= 10


@pytest.mark.parametrize("path,options", includes(),
                         ids=lambda v: v.get("pyobject", "") if isinstance(v, dict) else v.name)
def test_each_included_piece_exists(path, options):
    assert path.is_file(), path
    lines = pyobject_source(path, options["pyobject"])
    assert lines is not None, "%s has no function %s" % (path.name, options["pyobject"])
    body = "\n".join(lines)
    for key in ("start-at", "start-after", "end-at", "end-before"):
        if key in options:
            assert options[key] in body, "%s of %s: %r not found" % (key, options["pyobject"],
                                                                     options[key])


def test_the_pages_cells_call_the_project():
    text = PAGE.read_text()
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", text, re.S)
    assert cells, "no code cell"
    joined = "\n".join(cells)
    for call in ("lstm.saved_model", "lstm.load_states", "lstm.load_model", "lstm.evaluate_model",
                 "imdb.prepare_data", "imdb.load_dataset_file"):
        assert call in joined, call


def test_build_without_a_model_says_so_in_one_line(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    missing = str(tmp_path / "nope.npz")
    assert build.main(["--model", missing, "--out", str(tmp_path / "html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and "python lstm.py" in err
    assert not (tmp_path / "html").exists()
