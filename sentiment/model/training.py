"""The training loop of ``lstm.train_lstm`` as a state that can be checkpointed.

:class:`Trainer` runs the tutorial's loop (shuffled minibatches, display,
save and validation frequencies, early stopping) and writes and restores
checkpoints: everything a run needs to continue exactly. It gets the model
from ``lstm.compile_model``: a dict of compiled functions (``f_grad_shared``,
``f_update``, ``f_pred_error``, ...) and the parameters' shared variables.
"""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import dataclasses
import json
import os
import signal
import time
from collections import OrderedDict

import numpy as np
from pytensor import config

from sentiment.model.config import Config, checkpoint_path, model_paths
from sentiment.common.errors import DataError, one_line
from sentiment.common.files import NPZ_ERRORS, atomic_write, read_npz, savez
from sentiment.model.modelfile import save_model
from sentiment.model.variants import batcher


class JsonLog:
    """One JSON object a line, flushed at once (``<model>.log.jsonl``).

    ``keep`` lines of an existing log are kept (a resumed run); the rest is
    rewritten.
    """

    def __init__(self, path, keep=0):
        self.file = None
        if path:
            try:
                lines = []
                if keep and os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        lines = f.readlines()[:keep]
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                self.file = open(path, "w", encoding="utf-8")
                self.file.writelines(lines)
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError("%s: cannot write the log (%s)" % (path, exc)) from None

    def write(self, record):
        if self.file:
            self.file.write(json.dumps(record, sort_keys=True) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


class StopRequest:
    """Turn the first Ctrl-C (SIGINT) into a flag read between two updates.

    The update in flight completes, so the state saved afterwards is
    consistent; a second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


CHECKPOINT_VERSION = 1



class Trainer:
    """The tutorial's training loop, as a state that can be checkpointed.

    The state is everything a run needs to continue exactly: parameters,
    optimizer accumulators, the shuffling and dropout RNG states, the
    epoch's minibatch order and position, counters, ``history_errs`` and the
    best parameters so far.
    """

    def __init__(self, options, data, rngs, model, out, callback=None):
        self.options = options
        self.train_set, self.valid_set, self.test_set = data
        self.shuffle_rng = rngs["shuffle"]
        self.model = model
        self.out = out
        self.callback = callback
        self.prepare_data = batcher(options)
        self.eidx = 0  # the current epoch
        self.uidx = 0  # the number of updates done
        self.order = None  # this epoch's shuffled example order
        self.pos = 0  # minibatches of this epoch already done
        self.n_samples = 0  # examples seen this epoch
        self.history_errs = []
        self.best_p = None
        self.best_update = 0  # the update at which best_p was taken
        self.bad_counter = 0
        self.elapsed = 0.0  # training seconds before this process
        self.log_lines = 0
        n = len(self.train_set[0])
        n_batches = (n + options.batch_size - 1) // options.batch_size
        self.validFreq = n_batches if options.validFreq == -1 else options.validFreq
        self.saveFreq = n_batches if options.saveFreq == -1 else options.saveFreq

    # -- the loop -----------------------------------------------------------
    def run(self, stop):
        """Train until early stop, ``max_epochs``, a bad cost or ``stop``."""
        o = self.options
        self.start_time = time.time() - self.elapsed
        self.log = JsonLog(model_paths(o.saveto)[1] if o.saveto else None, self.log_lines)
        try:
            while self.eidx < o.max_epochs:
                if self.order is None:  # a new shuffled order of the training set
                    # The tutorial's get_minibatches_idx(n, batch_size, shuffle=True)
                    # cut into minibatches below.
                    self.order = np.arange(len(self.train_set[0]), dtype="int64")
                    self.shuffle_rng.shuffle(self.order)
                    if o.bucket:
                        self.order = bucket_order(self.order, self.train_set[0],
                                                  o.batch_size, o.bucket, self.shuffle_rng)
                batches = np.array_split(self.order, range(o.batch_size, len(self.order),
                                                           o.batch_size))
                while self.pos < len(batches):
                    if stop.requested:
                        print("Training interupted", file=self.out)
                        return "interrupted"
                    status = self.train_step(batches[self.pos])
                    if status == "early_stop":  # as the tutorial: "Seen" follows "Early Stop!"
                        print("Seen %d samples" % self.n_samples, file=self.out)
                    if status != "ok":
                        return status
                print("Seen %d samples" % self.n_samples, file=self.out)
                self.eidx, self.order, self.pos, self.n_samples = self.eidx + 1, None, 0, 0
            self.eidx -= 1  # the last epoch run, as the tutorial counts
            return "ok"
        finally:
            self.elapsed = time.time() - self.start_time
            self.log.close()

    def train_step(self, train_index):
        """One update on the examples ``train_index``, then display/save/validate."""
        o = self.options
        y = [self.train_set[1][t] for t in train_index]
        x = [self.train_set[0][t] for t in train_index]
        # x: (n_timesteps, n_samples) -- prepare_data swaps the axes.
        x, mask, y = self.prepare_data(x, y)
        cost = self.model["f_grad_shared"](x, mask, y)
        self.model["f_update"](np.asarray(o.lrate * o.lrate_decay ** self.eidx, config.floatX))
        if self.model.get("f_ema") is not None:
            self.model["f_ema"]()
        self.uidx += 1
        self.pos += 1
        self.n_samples += x.shape[1]

        if not np.isfinite(cost):
            print("bad cost detected: ", cost, file=self.out)
            return "bad_cost"
        if self.uidx % o.dispFreq == 0:
            print("Epoch ", self.eidx, "Update ", self.uidx, "Cost ", cost, file=self.out)
        if o.saveto and self.uidx % self.saveFreq == 0:
            print("Saving...", file=self.out)
            save_model(o.saveto, self.best_params(), self.history_errs, o)
            print("Done", file=self.out)
        status = "ok"
        if self.uidx % self.validFreq == 0:
            status = self.validate(cost)
        if o.saveto and self.uidx % self.saveFreq == 0:
            self.save_checkpoint(checkpoint_path(o.saveto))
        return status

    def validate(self, cost):
        """Errors on the three splits, best-model bookkeeping, early stop."""
        o = self.options
        splits = {"train": self.train_set, "valid": self.valid_set, "test": self.test_set}
        done = ["valid"] + o.monitored()  # the others are NaN here, null in the log
        averaged = bool(self.model.get("ema"))
        if averaged:  # evaluate the average of the weights
            current = self.model["get_params"]()
            self.model["set_params"](self.model_params())
        errs = self.model["f_pred_error"]({name: splits[name] for name in done})
        if averaged:
            self.model["set_params"](current)
        errs = {name: errs.get(name, float("nan")) for name in splits}
        self.history_errs.append([errs["valid"], errs["test"]])
        valid_errs = np.array(self.history_errs)[:, 0]
        is_best = self.best_p is None or errs["valid"] <= valid_errs.min()
        if is_best:
            self.best_p = self.model_params()
            self.best_update = self.uidx
            self.bad_counter = 0
        print("Train ", errs["train"], "Valid ", errs["valid"], "Test ", errs["test"],
              file=self.out)
        record = dict(epoch=self.eidx, update=self.uidx, cost=float(cost),
                      **{name + "_err": errs[name] if name in done else None
                         for name in splits}, best=bool(is_best),
                      seconds=round(time.time() - self.start_time, 3))
        self.log.write(record)
        self.log_lines += 1
        if self.callback:
            self.callback(record)
        if (len(self.history_errs) > o.patience and
                errs["valid"] >= valid_errs[:-o.patience].min()):
            self.bad_counter += 1
            if self.bad_counter > o.patience:
                print("Early Stop!", file=self.out)
                return "early_stop"
        return "ok"

    def model_params(self):
        """The parameters the model is now: the weights, or with ``--ema`` their average."""
        averages = self.model.get("ema")
        if not averages:
            return self.model["get_params"]()
        return OrderedDict((k, np.asarray(averages[k].get_value()))  # (JAX: from its device)
                           for k in self.model["tparams"])

    def best_params(self):
        """The best parameters so far, or the current ones before any validation."""
        return self.best_p if self.best_p is not None else self.model_params()

    # -- checkpoints ----------------------------------------------------------
    def save_checkpoint(self, path):
        """Write the whole training state to ``path`` (npz, atomically)."""
        state = dict(version=CHECKPOINT_VERSION, options=dataclasses.asdict(self.options),
                     eidx=self.eidx, uidx=self.uidx, pos=self.pos,
                     n_samples=self.n_samples, bad_counter=self.bad_counter,
                     best_update=self.best_update,
                     elapsed=time.time() - self.start_time, log_lines=self.log_lines,
                     has_best=self.best_p is not None,
                     shuffle_rng=self.shuffle_rng.bit_generator.state,
                     dropout_rng=(self.model["rng"].get_value().bit_generator.state
                                  if self.model["rng"] is not None else None))
        arrays = {"state_json": np.array(json.dumps(state, sort_keys=True)),
                  "history_errs": np.asarray(self.history_errs,
                                             dtype="float64").reshape(-1, 2),
                  "order": (self.order if self.order is not None
                            else np.zeros(0, dtype="int64"))}
        arrays.update(("param/" + k, v) for k, v in self.model["get_params"]().items())
        if self.best_p is not None:
            arrays.update(("best/" + k, v) for k, v in self.best_p.items())
        arrays.update(("opt/" + s.name, s.get_value()) for s in self.model["optimizer_state"])
        atomic_write(path, lambda f: savez(f, arrays))

    def restore(self, path, arrays, state):
        """Set this trainer (and its model) to a checkpoint's state."""
        tparams, model = self.model["tparams"], self.model
        try:
            for k, shared in tparams.items():
                shared.set_value(_checked(path, arrays, "param/" + k, shared.get_value()))
            for shared in model["optimizer_state"]:
                shared.set_value(_checked(path, arrays, "opt/" + shared.name,
                                          shared.get_value()))
            if state["has_best"]:
                self.best_p = OrderedDict(
                    (k, _checked(path, arrays, "best/" + k, v.get_value()))
                    for k, v in tparams.items())
            self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
            if model["rng"] is not None:
                generator = model["rng"].get_value()
                generator.bit_generator.state = state["dropout_rng"]
                model["rng"].set_value(generator)
            self.history_errs = [list(map(float, r)) for r in arrays["history_errs"]]
            order = arrays["order"]
            self.order = order.astype("int64") if order.size else None
            for key in ("eidx", "uidx", "pos", "n_samples", "bad_counter", "elapsed",
                        "log_lines", "best_update"):
                setattr(self, key, state[key])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("%s: not a usable checkpoint (%s)" % (path, exc)) from None


def bucket_order(order, seqs, batch_size, pool, rng):
    """``order`` rearranged so that each minibatch holds reviews of similar length.

    The shuffled ``order`` is cut into pools of ``pool * batch_size`` reviews;
    each pool is sorted by length (stable) and cut into minibatches; the full
    minibatches are shuffled with ``rng`` and the last, partial one (if any)
    stays last. Every review is still seen once per epoch; a minibatch is
    padded to its longest review, so similar lengths mean less padding to
    compute.
    """
    lengths = np.array([len(seqs[i]) for i in order])
    size = pool * batch_size
    sorted_order = np.concatenate([
        order[start:start + size][np.argsort(lengths[start:start + size], kind="stable")]
        for start in range(0, len(order), size)])
    n_full = len(order) // batch_size
    full = sorted_order[:n_full * batch_size].reshape(n_full, batch_size)
    return np.concatenate([full[rng.permutation(n_full)].ravel(),
                           sorted_order[n_full * batch_size:]])


def _checked(path, arrays, key, like):
    """``arrays[key]``, which must have the shape and dtype of ``like``."""
    if key not in arrays:
        raise DataError("%s: %s is not in the checkpoint" % (path, key))
    value = arrays[key]
    if value.shape != like.shape or value.dtype != like.dtype:
        raise DataError("%s: %s is %s %s, the run needs %s %s"
                        % (path, key, value.dtype, value.shape, like.dtype, like.shape))
    return value


def read_checkpoint(path):
    """The arrays, the decoded state and the options of the checkpoint ``path``.

    Raises a one-line :class:`DataError` naming ``path`` when it is missing,
    unreadable, or not a checkpoint (a model file, for example).
    """
    arrays = read_npz(path, "checkpoint")
    if "state_json" not in arrays:
        hint = (" (a model: its checkpoint is %s)" % checkpoint_path(path)
                if "history_errs" in arrays else "")
        raise DataError("%s: not a checkpoint, it holds no training state%s" % (path, hint))
    try:
        state = json.loads(str(arrays["state_json"]))
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError("unknown checkpoint version")
        options = Config.from_dict(state["options"]).validate()
    except NPZ_ERRORS + (KeyError, TypeError, RecursionError, AttributeError) as exc:
        raise DataError("%s: not a readable checkpoint (%s)" % (path, one_line(exc))) from None
    return arrays, state, options
