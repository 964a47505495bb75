"""One run of an optimizer comparison, as a task any worker can run, and the
finished runs a comparison keeps.

:func:`run_task` trains one run in its own folder and returns its record: what
``compare_optimizers.py`` writes to ``runs.jsonl``. It takes the training
function (``lstm.train_lstm``) as an argument, so that this package never
imports the scripts, and it runs the same in this process or on a Dask worker
(:mod:`sentiment.experiments.parallel`). A record carries the digest of its run's options
(:func:`options_digest`): a comparison started again in the same folder keeps
the runs that finished with the same options (:func:`kept_runs`) and runs the
others. Importing this module does no work.
"""
import dataclasses
import hashlib
import json
import os

from sentiment.experiments.reporting import MODEL_FILE, open_run_log, read_jsonl, run_name, train_run

#: Statuses of a run that finished: kept when the comparison is run again.
FINISHED = ("ok", "bad_cost")


def options_digest(options):
    """SHA-256 of the options of a run that differ from lstm.py's defaults (JSON,
    keys sorted), without where it saves: an option added to lstm.py later, at
    a default that changes nothing, leaves the digests of finished runs as
    they were."""
    defaults = dataclasses.asdict(type(options)())
    values = {k: v for k, v in dataclasses.asdict(options).items()
              if k != "saveto" and v != defaults[k]}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def run_folder(optimizer, seed, lrate=None):
    """``<optimizer>-seed<seed>``, or ``<optimizer>-lr<lrate>-seed<seed>`` in a tuned
    comparison (several rates of one optimizer)."""
    return run_name(optimizer if lrate is None else "%s-lr%g" % (optimizer, lrate), seed)


def run_task(train, options, folder, source=None, callback=None):
    """Train one run, saving to ``folder/lstm_model.npz``; return its record.

    The record: ``optimizer``, ``seed``, ``lrate`` (the rate the optimizer
    ran with), ``options_sha256``, ``status`` (``ok``, ``bad_cost``,
    ``error``, ``interrupted``), ``error``, ``result`` (``train``'s result
    without its history), ``init_sha256``, ``params_sha256``, the update,
    seconds and epoch of the best validation, ``folder`` (its name),
    ``model``, ``log`` and
    ``curve`` (the validation records, each also passed to ``callback``).
    A :class:`DataError` propagates: the data are wrong for every run.
    """
    options = dataclasses.replace(options, saveto=os.path.join(folder, MODEL_FILE))
    run = dict(optimizer=options.optimizer, seed=options.seed,
               lrate=options.optimizer_lrate(), options_sha256=options_digest(options),
               status=None, error=None, result=None, init_sha256=None, params_sha256=None,
               updates_to_best=None, seconds_to_best=None, epoch_of_best=None,
               folder=os.path.basename(folder), model=options.saveto)
    curve = []

    def on_validation(record):
        curve.append(dict(record))
        if callback is not None:
            callback(record)

    with open_run_log(options.saveto) as log:  # a run folder holds one run
        run["log"] = log.name
        status, result, error = train_run(train, options, log, source=source,
                                          callback=on_validation)
    run.update(status=status, result=result, error=error)
    if result is not None:
        run.update(init_sha256=result.get("init_sha256"),
                   params_sha256=result.get("params_sha256"))
        best = [r for r in curve if r["best"]]
        if best:  # the last record marked best is the model that was saved
            run.update(updates_to_best=best[-1]["update"],
                       seconds_to_best=best[-1]["seconds"], epoch_of_best=best[-1]["epoch"])
    run["curve"] = curve
    return run


def kept_runs(path):
    """The finished runs of ``path`` (``runs.jsonl``): ``{options digest: record}``.
    Runs that stopped (Ctrl-C, an error) are not kept: they run again."""
    return {record["options_sha256"]: record for record in read_jsonl(path)
            if record.get("options_sha256") and record.get("status") in FINISHED}
