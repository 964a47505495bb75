"""Model files: the parameters in an ``.npz`` (the tutorial's keys, no pickles),
the options as JSON beside it, and the digests that identify both.
"""
import dataclasses
import hashlib
import json
import os

import numpy as np

from sentiment.model.config import Config, model_paths
from sentiment.common.errors import DataError, one_line
from sentiment.common.files import atomic_write, read_npz, savez


def save_model(path, params, history_errs, options, **extra):
    """Write the model ``path`` (.npz) and its options JSON, atomically.

    The npz holds the tutorial's keys: each parameter, ``history_errs``
    (``[[valid_err, test_err], ...]``) and any ``extra`` arrays
    (``train_err``, ``valid_err``, ``test_err`` at the end of training).
    """
    arrays = dict(params)
    arrays["history_errs"] = np.asarray(history_errs, dtype="float64").reshape(-1, 2)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    atomic_write(path, lambda f: savez(f, arrays))
    text = json.dumps(dataclasses.asdict(options), indent=2, sort_keys=True) + "\n"
    atomic_write(model_paths(path)[0], lambda f: f.write(text.encode("utf-8")))


def load_options(path):
    """The Config saved as JSON beside the model ``path`` (or the JSON itself).

    A missing model, a model without its options file and a bad options file
    are one-line :class:`DataError` s naming the file the caller gave.
    """
    json_path = path if path.endswith(".json") else model_paths(path)[0]
    if json_path != path and not os.path.exists(path):
        raise DataError("%s: no such model file" % path)
    try:
        with open(json_path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        return Config.from_dict(values)
    except FileNotFoundError:
        raise DataError("%s: no such options file beside it (%s, written with each model)"
                        % (path, json_path)) from None
    except (OSError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise DataError("%s: bad options file (%s)" % (json_path, one_line(exc))) from None


def load_params(path, params):
    """Replace ``params`` values by the arrays saved in the model ``path``.

    Every parameter must be in the file, as real numbers of the same shape;
    raises :class:`DataError` (one line naming the file) otherwise. The file
    is read without unpickling anything.
    """
    saved = read_npz(path, "model", keys=params)
    for name, value in params.items():
        if name not in saved:
            raise DataError("%s: parameter %s is not in the archive" % (path, name))
        array = saved[name]
        if not isinstance(array, np.ndarray):  # a member that is not .npy data
            raise DataError("%s: parameter %s is not a .npy array" % (path, name))
        if array.dtype.kind not in "biuf":
            raise DataError("%s: parameter %s has dtype %s, expected real numbers"
                            % (path, name, array.dtype))
        if array.shape != value.shape:
            raise DataError("%s: parameter %s has shape %s, the model needs %s"
                            % (path, name, array.shape, value.shape))
        params[name] = array.astype(value.dtype)  # floatX, as init_params made it
    return params


def params_digest(params):
    """SHA-256 of the parameters' names, shapes and bytes."""
    h = hashlib.sha256()
    for name, value in params.items():
        h.update(("%s%s%s" % (name, value.shape, value.dtype)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def dictionary_digest(words, n_words):
    """SHA-256 of the dictionary's words with ids below ``n_words``: the part a
    model depends on (saved as ``dict_sha256``; the predictor checks it)."""
    pairs = sorted((i, w) for w, i in words.items() if i < n_words)
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()
