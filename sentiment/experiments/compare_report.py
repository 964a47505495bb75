"""The optimizer comparison's tables: ``results.csv`` and ``results.md``.

Per optimizer (:func:`summarize`): runs, failures, mean ± sample standard
deviation of the errors, updates and time, the test error's 95 % confidence
interval over seeds, and the updates and seconds to a target validation
error; between optimizers (:func:`paired_rows`): the difference of test
errors paired by seed, with a confidence interval, a paired t-test (Holm's
correction over the pairs) and Wilcoxon's signed-rank test; for a tuned
comparison, the validation error of every learning rate tried. Imports
neither ``lstm`` nor PyTensor; importing it does no work.
"""
import dataclasses
import time

from sentiment.experiments import stats
from sentiment.model.config import Config
from sentiment.experiments.reporting import (MISSING, format_mean_std, markdown_table, mean_std)
from sentiment.experiments.tuning import rate_text

# Columns of results.csv: one row per optimizer. *_mean / *_std are over the
# runs with status ok (sample standard deviation; empty with fewer than two).
STATS = ("valid_err", "test_err", "train_err", "updates_to_best", "epochs", "seconds",
         "updates_per_s")
CSV_COLUMNS = (["optimizer", "lrate", "runs", "ok", "failed", "status", "seeds_ok"]
               + ["%s_%s" % (name, s) for name in STATS for s in ("mean", "std")]
               + ["test_err_ci_low", "test_err_ci_high", "target_valid", "reached",
                  "updates_to_target_mean", "seconds_to_target_mean"])
PAIR_COLUMNS = ["a", "b", "n", "mean_diff", "ci_low", "ci_high", "t", "p_t", "p_holm",
                "p_wilcoxon", "significant"]
FAILURE_TEXT = {"bad_cost": "failed (bad cost)", "error": "failed (error)",
                "interrupted": "interrupted"}


def _metrics(run):
    """The numbers of one run that the tables summarise."""
    r = run["result"]
    return dict(valid_err=r["valid_err"], test_err=r["test_err"], train_err=r["train_err"],
                updates_to_best=run["updates_to_best"], epochs=r["epochs"],
                seconds=r["seconds"],
                updates_per_s=r["updates"] / r["seconds"] if r["seconds"] > 0 else None)


def _status(mine, ok):
    notes = []
    for status in ("bad_cost", "error", "interrupted"):
        n = sum(r["status"] == status for r in mine)
        if n:
            notes.append("%s in %d/%d seeds" % (FAILURE_TEXT[status], n, len(mine)))
    other = sorted({r["status"] for r in mine} - {"ok", "bad_cost", "error", "interrupted"})
    notes += ["status %s" % s for s in other]
    return "; ".join(notes) if notes else ("ok" if ok else "not run")


def summarize(runs, optimizers, target=None):
    """One dict per optimizer (in ``optimizers`` order): counts, status text,
    statistics, and how many runs reached validation error ``target`` (None:
    :func:`default_target`) and when."""
    rows, oks = [], []
    for name in optimizers:
        mine = [r for r in runs if r["optimizer"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        row = dict(optimizer=name, lrate=mine[0]["lrate"] if mine else None,
                   runs=len(mine), ok=len(ok),
                   failed=sum(r["status"] in ("bad_cost", "error") for r in mine),
                   status=_status(mine, ok), seeds_ok=" ".join(str(r["seed"]) for r in ok))
        metrics = [_metrics(r) for r in ok]
        for stat in STATS:
            row[stat + "_mean"], row[stat + "_std"] = mean_std(m[stat] for m in metrics)
        _, row["test_err_ci_low"], row["test_err_ci_high"] = stats.mean_ci(
            [m["test_err"] for m in metrics])
        rows.append(row)
        oks.append(ok)
    target = target or default_target(rows)
    for row, ok in zip(rows, oks):
        reached = [stats.first_reach(r["curve"], target) for r in ok] if target else []
        reached = [x for x in reached if x is not None]
        row.update(target_valid=target, reached=len(reached) if target else None,
                   updates_to_target_mean=mean_std(x["update"] for x in reached)[0],
                   seconds_to_target_mean=mean_std(x["seconds"] for x in reached)[0])
    return rows


def default_target(rows):
    """The validation error every optimizer reached on average: the highest of
    their mean best validation errors (None when none finished)."""
    means = [r["valid_err_mean"] for r in rows if r["valid_err_mean"] is not None]
    return max(means) if means else None


def paired_rows(runs, optimizers, key="test_err"):
    """:func:`sentiment.experiments.stats.pairwise` of ``key`` over the runs finished ok,
    paired by seed."""
    results = {name: {r["seed"]: r["result"][key] for r in runs
                      if r["optimizer"] == name and r["status"] == "ok"}
               for name in optimizers}
    return stats.pairwise({k: v for k, v in results.items() if v})


def _differs(base):
    """``name=value`` of the options that differ from lstm.py's defaults."""
    defaults = Config()
    return ["%s=%s" % (f.name, getattr(base, f.name)) for f in dataclasses.fields(base)
            if f.name not in ("optimizer", "seed", "saveto", "ydim", "lrate",
                              "adaptive_lrate")
            and getattr(base, f.name) != getattr(defaults, f.name)]


def _intro(runs, info):
    """The title, the command, what was run and how to read the tables."""
    base, (n_train, n_valid, n_test) = info["base"], info["sizes"]
    finished = sum(r["status"] != "interrupted" for r in runs)
    lines = ["# Optimizer comparison: %s" % ", ".join(info["optimizers"]), "",
             "`%s`" % info["command"], "",
             "lstm.py's LSTM on `%s` (%d train / %d valid / %d test reviews), seeds %s; "
             "%d of %d runs finished%s. Within a seed every optimizer starts from the same "
             "initial parameters and sees the same split and minibatch order."
             % (base.dataset, n_train, n_valid, n_test, ", ".join(map(str, info["seeds"])),
                finished, info["planned"],
                " (%d kept from an earlier start)" % info["kept"] if info.get("kept") else ""),
             "", "Options other than lstm.py's defaults: %s."
             % (", ".join("`%s`" % d for d in _differs(base)) or "none"), ""]
    if info.get("wall"):
        lines += ["Wall time%s: %s (%s)." % (" of this start" if info.get("kept") else "",
                                             info["wall"], info["where"]), ""]
    return lines + [
        "Errors are shares of misclassified reviews, of each run's best model (lowest "
        "validation error, the one saved): mean ± sample standard deviation over the seeds "
        "that finished ok; the test error also with its 95 % confidence interval "
        "(Student's t over seeds). Seconds are training time, without loading and "
        "compiling.", ""]


def _summary_table(rows):
    """One line per optimizer; the lowest mean errors in bold when several ran."""
    ranked = [r for r in rows if r["ok"]]
    best = {}
    if len(ranked) > 1:
        for stat in ("valid_err", "test_err"):
            best[stat] = min(r[stat + "_mean"] for r in ranked)
    table = []
    for row in rows:
        cells = [format_mean_std(row["valid_err_mean"], row["valid_err_std"], "%.4f"),
                 stats.format_ci(row["test_err_mean"], row["test_err_ci_low"],
                                 row["test_err_ci_high"]).replace("—", MISSING)]
        for k, stat in enumerate(("valid_err", "test_err")):
            if row["ok"] and best.get(stat) == row[stat + "_mean"]:
                cells[k] = "**%s**" % cells[k]
        cells += [format_mean_std(row[s + "_mean"], row[s + "_std"], f) for s, f in
                  (("train_err", "%.4f"), ("updates_to_best", "%.0f"), ("epochs", "%.1f"),
                   ("seconds", "%.1f"), ("updates_per_s", "%.1f"))]
        cells.append(_reach_cell(row))
        lrate = MISSING if row["lrate"] is None else rate_text(row["lrate"])
        table.append([row["optimizer"], lrate, "%d/%d" % (row["ok"], row["runs"])] + cells
                     + [row["status"]])
    target = rows[0]["target_valid"] if rows else None
    reach = ("to valid ≤ %.4f: runs, mean updates / s" % target) if target else "to target"
    return markdown_table(["optimizer", "learning rate", "runs ok", "best valid error",
                           "test error [95 % CI]", "train error",
                           "updates to best", "epochs", "seconds", "updates/s", reach,
                           "status"], table)


def _reach_cell(row):
    if row["target_valid"] is None or not row["ok"]:
        return MISSING
    if not row["reached"]:
        return "0/%d" % row["ok"]
    return "%d/%d, %.0f / %.1f" % (row["reached"], row["ok"], row["updates_to_target_mean"],
                                   row["seconds_to_target_mean"])


def _pairs_table(pairs):
    """One line per pair of optimizers: the paired test-error difference and its tests."""
    def p(value):
        return MISSING if value is None else "%.3g" % value

    table = []
    for pair in pairs:
        diff = MISSING if pair["mean_diff"] is None else "%+.4f" % pair["mean_diff"]
        if pair["ci_low"] is not None:
            diff += " [%+.4f, %+.4f]" % (pair["ci_low"], pair["ci_high"])
        table.append(["%s − %s" % (pair["a"], pair["b"]), str(pair["n"]), diff, p(pair["p_t"]),
                      p(pair["p_holm"]), p(pair["p_wilcoxon"]),
                      "**yes**" if pair["significant"] else "no"])
    return markdown_table(["pair (a − b)", "seeds", "test error difference [95 % CI]",
                           "p (paired t)", "p (Holm)", "p (Wilcoxon)",
                           "significant at 5 % (Holm)"], table)


def _tuning_section(tuning):
    """The learning rates tried, each one's mean validation error, the choice."""
    lines = ["## Learning rates (chosen on the validation split only)", "",
             "%s for each rate; each optimizer's rate with the lowest mean best "
             "validation error (bold) was then run over every seed. The test split plays "
             "no part in the choice." % plural_seeds(tuning["seeds"]), ""]
    table = []
    for name, choice in tuning["choices"].items():
        cells = []
        for lrate, mean, n_ok, n in choice["table"]:
            text = "%s: %s" % (rate_text(lrate), MISSING if mean is None else "%.4f" % mean)
            if n_ok < n:
                text += " (%d/%d failed)" % (n - n_ok, n)
            cells.append("**%s**" % text if lrate == choice["lrate"] else text)
        note = "at the edge of its grid: the best rate may lie outside it" \
            if choice["at_edge"] else ("no rate finished" if choice["lrate"] is None else "")
        table.append([name, ", ".join(cells), note])
    return (lines + markdown_table(["optimizer", "learning rate: mean best valid error",
                                    "note"], table)
            + ["", "![validation error against the learning rate](tuning.png)", ""])


def plural_seeds(seeds):
    """``seed 123`` or ``seeds 123, 124``."""
    return ("seed %d" % seeds[0] if len(seeds) == 1
            else "seeds %s" % ", ".join(map(str, seeds))).capitalize()


def _runs_table(runs):
    """One line per run: its status, errors, updates, time and initial parameters."""
    table = []
    for run in runs:
        r = run["result"]
        status = run["status"] + (": " + run["error"] if run["error"] else "")
        if r:
            nums = ["%.4f" % r["valid_err"], "%.4f" % r["test_err"], "%.4f" % r["train_err"],
                    MISSING if run["updates_to_best"] is None else str(run["updates_to_best"]),
                    str(r["epochs"]), str(r["updates"]), "%.1f" % r["seconds"]]
        else:
            nums = [MISSING] * 7
        digest = (run["init_sha256"] or MISSING)[:16]
        table.append([run["folder"], status.replace("|", "/")] + nums + ["`%s`" % digest])
    return markdown_table(["run", "status", "best valid error", "test error", "train error",
                           "updates to best", "epochs", "updates", "seconds",
                           "initial parameters (sha256)"], table)


def markdown_text(rows, pairs, runs, info, tuning=None):
    """results.md: what was run, the summary per optimizer, the paired tests,
    the learning rates tried, the figures, each run."""
    lines = _intro(runs, info) + _summary_table(rows)
    lines += ["", "![validation and training error against updates and training time]"
                  "(curves.png)", "", "## Paired comparisons of the test error", "",
              "Differences of test errors between two optimizers over the seeds both "
              "finished (the same seed: the same initial parameters, split and minibatch "
              "order). p-values: two-sided paired t-test, corrected for the number of pairs "
              "by Holm's method, and Wilcoxon's signed-rank test (exact; with n seeds it "
              "cannot go below 2/2^n).", ""]
    lines += _pairs_table(pairs) if pairs else ["(fewer than two optimizers finished)"]
    lines += [""]
    if tuning:
        lines += _tuning_section(tuning)
    lines += ["## Runs", ""] + _runs_table(runs)
    lines += ["", "Each run's model, options, log and checkpoint are in its folder; "
                  "`runs.jsonl` has the same rows as JSON (with each run's validation "
                  "curve), `pairs.csv` the paired tests.",
              "Written %s." % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())]
    return "\n".join(lines) + "\n"
