"""What the experiment scripts share: run folders, training a run, and results as files.

``compare_optimizers.py`` and ``run_variants.py`` train one run after the
other, each in its own folder, and rewrite their tables after every run.
This module holds what they do alike: the run folder's name and its fresh
``train.log``, one training call whose failure is recorded rather than
raised, JSON lines, CSV and Markdown tables, mean ± standard deviation, and
durations. It imports neither ``lstm`` nor PyTensor; importing it does no
work.
"""
import contextlib
import csv
import io
import json
import math
import os
import traceback

import numpy as np

from sentiment.model.config import checkpoint_path, model_paths
from sentiment.common.errors import DataError, one_line
from sentiment.common.files import atomic_write

#: What a run saves in its folder, and the file with its progress lines.
MODEL_FILE = "lstm_model.npz"
LOG_FILE = "train.log"
#: Shown for a number that is missing (no run finished).
MISSING = "–"


# ---------------------------------------------------------------------------
# Runs.
# ---------------------------------------------------------------------------
def run_name(name, seed):
    """The folder of run ``name`` with ``seed``: ``<name>-seed<seed>``."""
    return "%s-seed%d" % (name, seed)


def run_files(saveto):
    """The files a run saving its model to ``saveto`` leaves in its folder."""
    folder = os.path.dirname(saveto)
    return ((saveto,) + tuple(model_paths(saveto))
            + (checkpoint_path(saveto), os.path.join(folder, LOG_FILE)))


def open_run_log(saveto):
    """A new ``train.log`` beside the model ``saveto``, opened for writing.

    Makes the folder and removes what an earlier run left there (model,
    options, JSON log, checkpoint, log): a run folder holds one run. An
    ``OSError`` becomes a one-line :class:`DataError`.
    """
    path = os.path.join(os.path.dirname(saveto), LOG_FILE)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        for stale in run_files(saveto):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        return open(path, "w", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise DataError("%s: cannot write (%s)" % (path, exc.strerror or exc)) from None


def error_text(exc):
    """``Type: message`` of an exception, on one line."""
    return "%s: %s" % (type(exc).__name__, one_line(exc))


def result_record(result):
    """``train_lstm``'s result without its (long) ``history_errs``."""
    return {k: v for k, v in result.items() if k != "history_errs"}


def train_run(train, options, log, **kwargs):
    """``(status, result, error)`` of ``train(options, out=log, **kwargs)``.

    ``train`` is ``lstm.train_lstm``; its progress lines and its standard
    error go to ``log``. A :class:`DataError` propagates (the data are wrong
    for every run). Ctrl-C that ``train`` did not turn into a clean stop gives
    ``("interrupted", None, "stopped by Ctrl-C")``; any other exception
    ``("error", None, "Type: message")``, its traceback written to ``log``.
    Otherwise the result's status, the result without ``history_errs``, None.
    """
    try:
        with contextlib.redirect_stderr(log):
            result = train(options, out=log, **kwargs)
    except DataError:
        raise
    except KeyboardInterrupt:  # a second Ctrl-C, or one while compiling
        return "interrupted", None, "stopped by Ctrl-C"
    except Exception as exc:  # noqa: BLE001 -- recorded, the other runs go on
        traceback.print_exc(file=log)
        return "error", None, error_text(exc)
    return result["status"], result_record(result), None


# ---------------------------------------------------------------------------
# Numbers as text.
# ---------------------------------------------------------------------------
def duration(seconds):
    """``42s``, ``3m07s`` or ``2h05m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def mean_std(values):
    """``(mean, sample standard deviation)`` of the finite ``values``.

    None values and NaN/infinities are left out; the deviation is None with
    fewer than two values, both are None with none.
    """
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def format_mean_std(mean, std, fmt):
    """``fmt % mean`` and `` ± fmt % std`` when there is one; :data:`MISSING` without a mean."""
    if mean is None:
        return MISSING
    return fmt % mean + ("" if std is None else " ± " + fmt % std)


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------
def json_safe(value):
    """``value`` with NaN and infinities as None and NumPy scalars as Python ones."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def jsonl_text(records, drop=()):
    """One JSON object per record and line (keys sorted, :func:`json_safe`),
    without the keys named in ``drop``."""
    return "".join(json.dumps(json_safe({k: v for k, v in r.items() if k not in drop}),
                              sort_keys=True) + "\n" for r in records)


def read_jsonl(path):
    """The objects of a JSON-lines file; ``[]`` when there is no such file.

    A line that is not JSON is a one-line :class:`DataError`.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError("%s: cannot read (%s)" % (path, one_line(exc))) from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise DataError("%s: line %d is not JSON (%s)" % (path, number, one_line(exc))
                            ) from None
    return records


def csv_cell(value):
    """A CSV cell: empty for None, 6 significant digits for a float."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "%.6g" % value
    return str(value)


def csv_text(columns, rows, quote_all=False):
    """A header of ``columns``, then each row (a dict; a missing key is empty).

    With ``quote_all`` every cell of the rows is quoted, the header's only
    where needed.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    writer = csv.writer(buffer, lineterminator="\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def markdown_table(header, rows):
    """The lines of a Markdown table: ``header``, then each row (a list of cells)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def write_texts(folder, texts):
    """Write each ``{name: text}`` to ``folder/name`` atomically."""
    for name, text in texts.items():
        write_text(os.path.join(folder, name), text)
