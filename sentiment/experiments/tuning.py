"""Learning-rate grids for ``compare_optimizers.py --tune``, and the choice of a rate.

A fair comparison of optimizers gives each its best step size before
comparing them [Wilson2017]_ [Choi2019]_ [Schmidt2021]_: here, for each
optimizer, the runs of a grid of learning rates are compared on the
**validation** split only (:func:`select` reads nothing else), and the chosen
rate is then run over the seeds. The default grids are half-decades around
each rule's usual value. AdaDelta has no learning rate in the tutorial: its
"rate" is a factor on its step (``torch.optim.Adadelta``'s ``lr``; the
tutorial's rule is 1); RMSProp's is its step (the tutorial's 1e-4). Importing
this module does no work.

References
----------
.. [Wilson2017] Ashia C. Wilson, Rebecca Roelofs, Mitchell Stern, Nathan
   Srebro and Benjamin Recht, *The Marginal Value of Adaptive Gradient
   Methods in Machine Learning*, NeurIPS 2017.
.. [Choi2019] Dami Choi, Christopher J. Shallue, Zachary Nado, Jaehoon Lee,
   Chris J. Maddison and George E. Dahl, *On Empirical Comparisons of
   Optimizers for Deep Learning*, arXiv:1910.05446, 2019.
.. [Schmidt2021] Robin M. Schmidt, Frank Schneider and Philipp Hennig,
   *Descending through a Crowded Valley -- Benchmarking Deep Learning
   Optimizers*, ICML 2021.
"""
import dataclasses
import math

from sentiment.model.config import LRATE_OPTIMIZERS, OPTIMIZERS

#: Each optimizer's default grid (ascending).
DEFAULT_GRIDS = {
    "adadelta": (0.3, 1.0, 3.0),  # a factor on the step; 1 = the tutorial's rule
    "rmsprop": (3e-5, 1e-4, 3e-4, 1e-3),  # the step; 1e-4 = the tutorial's
    "sgd": (0.01, 0.1, 1.0),
    "nesterov": (0.001, 0.01, 0.1),
    "adagrad": (0.003, 0.01, 0.03),
    "adam": (3e-4, 1e-3, 3e-3),
    "adamw": (3e-4, 1e-3, 3e-3),
}


def parse_lrates(specs):
    """``["sgd=0.01,0.1,1", "adam=1e-3"]`` -> ``{"sgd": (0.01, 0.1, 1.0), ...}``.

    Raises ValueError naming the bad item: no ``=``, an unknown optimizer, a
    rate that is not a positive finite number, or an optimizer given twice.
    """
    grids = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise ValueError("%r: write NAME=RATE[,RATE...], e.g. sgd=0.01,0.1,1" % spec)
        if name not in OPTIMIZERS:
            raise ValueError("%r: unknown optimizer %r (one of %s)"
                             % (spec, name, ", ".join(OPTIMIZERS)))
        if name in grids:
            raise ValueError("%r: learning rates of %s given twice" % (spec, name))
        try:
            rates = sorted({float(v) for v in values.split(",")})
        except ValueError:
            raise ValueError("%r: learning rates must be numbers" % spec) from None
        if not all(math.isfinite(r) and r > 0 for r in rates):
            raise ValueError("%r: learning rates must be positive" % spec)
        grids[name] = tuple(rates)
    return grids


def grids_for(optimizers, given):
    """The grid of each of ``optimizers``: ``given``'s, else the default."""
    return {name: tuple(given.get(name, DEFAULT_GRIDS[name])) for name in optimizers}


def with_lrate(options, optimizer, lrate):
    """``options`` for ``optimizer`` at learning rate ``lrate`` (None: as given).

    Sets ``lrate`` for the optimizers that read it, ``adaptive_lrate`` for
    AdaDelta and RMSProp (:meth:`Config.optimizer_lrate` reads it back).
    """
    if optimizer in LRATE_OPTIMIZERS:  # adaptive_lrate is AdaDelta's and RMSProp's only
        return dataclasses.replace(options, optimizer=optimizer, adaptive_lrate=0.0,
                                   lrate=options.lrate if lrate is None else float(lrate))
    return dataclasses.replace(options, optimizer=optimizer, adaptive_lrate=(
        options.adaptive_lrate if lrate is None else float(lrate)))


def rate_text(lrate):
    """A learning rate as people write it: ``0.1``, ``3e-05``, ``1``."""
    return "%g" % lrate


def select(runs, grids):
    """Each optimizer's learning rate with the lowest mean validation error.

    ``runs``: the tuning runs' records (``optimizer``, ``lrate``, ``status``,
    ``result``); only ``result["valid_err"]`` of the runs with status ``ok``
    is read, so the test split cannot leak into the choice. A rate whose runs
    did not all finish ok counts as never learning (error 1). Ties go to the
    smaller rate. Returns ``{optimizer: choice}`` where ``choice`` has
    ``lrate`` (None when no rate finished), ``valid_err`` (its mean),
    ``table`` (one ``(lrate, mean valid error or None, runs ok, runs)`` per
    grid point, ascending) and ``at_edge`` (the choice is the grid's smallest
    or largest rate: the best may lie outside it).
    """
    choices = {}
    for name, grid in grids.items():
        table, best = [], None
        for lrate in grid:
            mine = [r for r in runs if r["optimizer"] == name and r["lrate"] == lrate]
            ok = [r["result"]["valid_err"] for r in mine if r["status"] == "ok"]
            mean = sum(ok) / len(ok) if ok else None
            table.append((lrate, mean, len(ok), len(mine)))
            score = mean if ok and len(ok) == len(mine) else 1.0
            if mine and (best is None or score < best[0]):
                best = (score, lrate, mean)
        chosen = best[1] if best and best[2] is not None else None
        choices[name] = dict(lrate=chosen, valid_err=best[2] if chosen is not None else None,
                             table=table,
                             at_edge=chosen is not None and len(grid) > 1
                             and chosen in (grid[0], grid[-1]))
    return choices
