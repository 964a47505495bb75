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


def test_what_the_pages_cells_import_of_the_project_exists():
    # A cell's import of a moved or renamed module would fail only when the page is built.
    import importlib
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", PAGE.read_text(), re.S)
    tree = ast.parse("\n".join(re.sub(r"^:tags:.*$", "", c, flags=re.M) for c in cells))
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in (
                "sentiment", "lstm", "imdb", "imdb_preprocess"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    "%s.%s" % (node.module, alias.name)), "%s.%s" % (node.module, alias.name)
                checked += 1
    assert checked >= 3


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


# The API reference (docs/tutorial/api.md): autosummary over the three scripts and the package.

API_PAGE = ROOT / "docs" / "tutorial" / "api.md"
SCRIPTS = ("lstm", "imdb", "imdb_preprocess")
AUTOSUMMARY = re.compile(r"^\.\. autosummary::\n((?:   :[\w-]+:.*\n)*)\n((?:   \S.*\n)+)", re.M)


def autosummaries(text):
    """(options, names) of each ``.. autosummary::`` of ``text``, as autosummary reads them."""
    found = []
    for opts, body in AUTOSUMMARY.findall(text):
        options = dict(re.findall(r":([\w-]+):[ ]?(.*)", opts))
        found.append((options, body.split()))
    return found


def package_modules():
    """Every module of the package ``sentiment``, subpackages included, without importing it."""
    import pkgutil
    return ["sentiment"] + [m.name for m in pkgutil.walk_packages([str(ROOT / "sentiment")],
                                                                   "sentiment.")]


def test_the_api_page_documents_the_scripts_and_every_module():
    blocks = autosummaries(API_PAGE.read_text())
    assert blocks, "no autosummary in api.md"
    listed = {name: options for options, names in blocks for name in names}
    for script in SCRIPTS:
        assert script in listed, script
    modules = package_modules()
    assert len(modules) > 30
    for module in modules:
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)]
        assert module in listed or any(
            p in listed and "recursive" in listed[p] for p in parents), module
    for options, _ in blocks:
        assert options.get("toctree"), "an autosummary without :toctree: writes no page"


def test_the_module_template_recurses_into_subpackages():
    template = (ROOT / "docs" / "tutorial" / "_templates" / "autosummary" / "module.rst").read_text()
    assert ".. automodule:: {{ fullname }}\n   :members:" in template
    modules_block = template[template.index("{%- block modules %}"):]
    assert ":toctree:" in modules_block and ":recursive:" in modules_block


def test_the_generated_pages_are_not_committed():
    folders = {options["toctree"].strip() for options, _ in autosummaries(API_PAGE.read_text())}
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in folders:
        assert "/docs/tutorial/%s/" % folder in ignored, folder


def test_the_api_page_is_in_the_sites_toctree():
    toctrees = re.findall(r"```\{toctree\}\n((?::[\w-]+:.*\n)*)((?:.+\n)*?)```", PAGE.read_text())
    assert any("api" in entries.split() for _, entries in toctrees)


def test_sphinx_and_numpydoc_are_pinned():
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)$", (ROOT / "docs" / "requirements.txt").read_text(),
                           re.M))
    assert "numpydoc" in pins and "Sphinx" in pins, pins
    conf = ast.parse((ROOT / "docs" / "tutorial" / "conf.py").read_text())
    extensions = next(ast.literal_eval(node.value) for node in conf.body
                      if isinstance(node, ast.Assign) and node.targets[0].id == "extensions")
    for extension in ("sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"):
        assert extension in extensions, extension


def docstrings(path):
    """(name, docstring) of the module, functions, classes and methods of ``path``."""
    tree = ast.parse(path.read_text())
    found = [(path.stem, ast.get_docstring(tree))]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(("%s.%s" % (path.stem, node.name), ast.get_docstring(node)))
    return [(name, doc) for name, doc in found if doc]


DOCUMENTED = [ROOT / ("%s.py" % s) for s in SCRIPTS] + sorted((ROOT / "sentiment").rglob("*.py"))


@pytest.mark.parametrize("path", DOCUMENTED, ids=lambda p: p.name)
def test_citations_are_defined_where_they_are_cited(path):
    # numpydoc renames each docstring's citations to its own, so a [label]_ of one docstring
    # cannot reach a ``.. [label]`` of another (the build fails with "citation not found").
    for name, doc in docstrings(path):
        defined = set(re.findall(r"^\s*\.\. \[([^\]]+)\]", doc, re.M))
        for label in re.findall(r"\[([\w.-]+)\]_", doc):
            assert label in defined, "%s cites [%s]_ defined elsewhere" % (name, label)


@pytest.mark.parametrize("path", DOCUMENTED, ids=lambda p: p.name)
def test_summary_lines_are_whole_rst(path):
    # autosummary's tables show a docstring's first sentence, cut at ". ": a cut inside
    # ``...`` leaves an unclosed literal (a docutils warning, which fails the build).
    autosummary = pytest.importorskip("sphinx.ext.autosummary")
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    settings = get_default_settings(Parser)
    settings.report_level = 5
    import inspect
    for name, doc in docstrings(path):
        summary = autosummary.extract_summary(inspect.cleandoc(doc).splitlines(), settings)
        assert summary.count("``") % 2 == 0, "%s: %r" % (name, summary)
