"""Small-sample statistics for comparing optimizers over seeds.

``compare_optimizers.py`` trains every optimizer once per seed, and a seed
fixes the initial parameters, the data split and the batch order for every
optimizer, so two optimizers' results are *paired* by seed. With a handful
of seeds (2 to 10) the honest summaries are a Student-t confidence interval
[Student1908]_, the paired t-test and the Wilcoxon signed-rank test
[Wilcoxon1945]_ on the per-seed differences (the latter recommended for
comparing learners by [Demsar2006]_), with Holm's step-down correction
[Holm1979]_ when several pairs are tested. Every function here is pure;
importing the module does nothing but import NumPy and SciPy.

References
----------
.. [Student1908] Student (W. S. Gosset), *The Probable Error of a Mean*,
   Biometrika 6(1), 1908, pp. 1-25.
.. [Wilcoxon1945] Frank Wilcoxon, *Individual Comparisons by Ranking
   Methods*, Biometrics Bulletin 1(6), 1945, pp. 80-83.
.. [Holm1979] Sture Holm, *A Simple Sequentially Rejective Multiple Test
   Procedure*, Scandinavian Journal of Statistics 6(2), 1979, pp. 65-70.
.. [Demsar2006] Janez Demšar, *Statistical Comparisons of Classifiers over
   Multiple Data Sets*, Journal of Machine Learning Research 7, 2006,
   pp. 1-30.
"""
import itertools
import math

import numpy as np
from scipy import stats

#: Largest number of differences for which, when they hold ties or zeros,
#: the Wilcoxon p-value comes from enumerating all ``2**n`` sign flips
#: (SciPy's own limit for a deterministic permutation test); above it, the
#: normal approximation.
WILCOXON_PERMUTATION_MAX_N = 13


def _finite(values, what="values"):
    """``values`` as a 1-d float array; ValueError on NaN, inf or None."""
    try:
        x = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError("%s must be numbers: %s" % (what, e)) from None
    if x.ndim != 1:
        raise ValueError("%s must be a flat sequence of numbers" % what)
    if not np.all(np.isfinite(x)):
        raise ValueError("%s must be finite (no NaN, inf or None): %r" % (what, x.tolist()))
    return x


def mean_ci(values, confidence=0.95):
    """The mean of ``values`` and its Student-t confidence interval (Student, 1908).

    The interval is ``mean ± t_{1-α/2, n-1} · s / √n`` with ``α = 1 -
    confidence`` and ``s`` the sample standard deviation (``ddof=1``); it
    assumes the values are independent draws from a roughly normal
    distribution, which is as much as one can say with a few seeds.

    Parameters
    ----------
    values : iterable of float
        One number per seed (finished runs only).
    confidence : float, optional
        Coverage of the interval, in (0, 1).

    Returns
    -------
    tuple of (float or None, float or None, float or None)
        ``(mean, low, high)``. With one value, ``(value, None, None)``: no
        spread can be estimated. With none, ``(None, None, None)``. When all
        values are equal the interval has zero width, ``(m, m, m)``.

    Raises
    ------
    ValueError
        If a value is NaN, infinite or None, or ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1), not %r" % (confidence,))
    x = _finite(values)
    n = x.size
    if n == 0:
        return None, None, None
    mean = float(x.mean())
    if n == 1:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


#: Differences within this fraction of the inputs' largest magnitude are
#: floating-point rounding, not a difference: ``0.2 - 0.3`` and ``0.21 -
#: 0.31`` differ in the last bit, and would otherwise make a constant
#: difference look noisy (a p-value of 1e-32 instead of 0) or break a tie.
RELATIVE_TOLERANCE = 1e-12


def _differences(x, y):
    """``(d, tol)``: ``d = x - y`` with entries within ``tol`` of zero set to
    zero, ``tol`` = :data:`RELATIVE_TOLERANCE` times the largest ``|x|, |y|``."""
    d = x - y
    scale = float(max(np.abs(x).max(), np.abs(y).max())) if d.size else 0.0
    tol = RELATIVE_TOLERANCE * scale
    d[np.abs(d) <= tol] = 0.0
    return d, tol


def _wilcoxon(d, tol):
    """Two-sided Wilcoxon signed-rank p-value of the differences ``d``
    (Wilcoxon, 1945) and the method that gave it, or ``(None, None)``.

    Zeros are dropped (Wilcoxon's own rule, SciPy's ``zero_method="wilcox"``);
    differences are ranked on a grid of step ``tol`` (the test only sees
    ranks), so ones equal up to rounding tie. Without ties or zeros the
    p-value is exact (``method="exact"``); with them, and at most
    :data:`WILCOXON_PERMUTATION_MAX_N` differences, it is exact given the
    ties, from all ``2**n`` sign flips (a permutation test); otherwise it is
    the normal approximation with tie and continuity corrections.
    """
    if d.size < 2 or not np.any(d != 0):
        return None, None
    d = np.round(d / tol) if tol > 0 else d
    nonzero = np.abs(d[d != 0])
    if nonzero.size == d.size and np.unique(nonzero).size == nonzero.size:
        method, name = "exact", "exact"
    elif d.size <= WILCOXON_PERMUTATION_MAX_N:
        method, name = stats.PermutationMethod(n_resamples=2 ** d.size), "permutation"
    else:
        method, name = "asymptotic", "asymptotic"
    return float(stats.wilcoxon(d, method=method).pvalue), name


def _t_test(d, tol):
    """``(t, p)``: the two-sided one-sample t-test of ``mean(d) == 0``,
    which is the paired t-test (Student, 1908; ``scipy.stats.ttest_rel``);
    ``(None, None)`` for fewer than two differences; ``(0.0, 1.0)`` or
    ``(±inf, 0.0)`` when the differences vary by no more than ``tol``."""
    if d.size < 2:
        return None, None
    if np.ptp(d) <= tol:  # zero variance: t is 0/0 or ±x/0
        if not np.any(d != 0):
            return 0.0, 1.0
        return math.copysign(math.inf, float(d.mean())), 0.0
    res = stats.ttest_1samp(d, 0.0)
    return float(res.statistic), float(res.pvalue)


def paired_test(a, b, confidence=0.95):
    """Compare two optimizers' results paired by position (the same seeds).

    The differences ``d = a - b`` are summarised by their mean and its
    Student-t interval (:func:`mean_ci`), and tested for a zero mean with
    the two-sided paired t-test (Student, 1908; as ``scipy.stats.ttest_rel``)
    and for symmetry about zero with the two-sided Wilcoxon signed-rank test
    (Wilcoxon, 1945), which does not assume normal differences.

    Edge cases, stated rather than hidden:

    * fewer than two pairs: no interval and no tests (``None``);
    * zero variance of the differences, where the t statistic is undefined:
      all differences zero gives ``t = 0.0, p_t = 1.0`` (nothing to tell
      apart); a constant non-zero difference gives ``t = ±inf, p_t = 0.0``
      (a perfectly consistent difference), where SciPy gives NaN;
    * differences within :data:`RELATIVE_TOLERANCE` times the largest
      ``|a|, |b|`` of each other (or of zero) count as equal (or zero):
      rounding error, not a result. Otherwise the numbers are SciPy's;
    * Wilcoxon: zeros are dropped; the p-value is exact when the differences
      have no ties or zeros, exact given the ties (all ``2**n`` sign flips)
      when they have some and ``n <=`` :data:`WILCOXON_PERMUTATION_MAX_N`,
      else the normal approximation; ``None`` when ``n < 2`` or all
      differences are zero. Note that with ``n`` non-zero differences the
      smallest two-sided p-value is ``2 / 2**n``: 0.0625 for five seeds,
      so the Wilcoxon test cannot reach 0.05 with five seeds or fewer.

    Parameters
    ----------
    a, b : sequence of float
        Results of the two optimizers, ``a[i]`` and ``b[i]`` from the same
        seed; finite numbers, equal lengths.
    confidence : float, optional
        Coverage of the interval of the mean difference.

    Returns
    -------
    dict
        ``n`` (int), ``mean_diff`` (mean of ``a - b``; None when n == 0),
        ``ci_low``, ``ci_high`` (None when n < 2), ``t``, ``p_t`` (None when
        n < 2), ``p_wilcoxon`` and ``wilcoxon_method`` (``"exact"``,
        ``"permutation"``, ``"asymptotic"``; both None when there is no
        Wilcoxon p-value).

    Raises
    ------
    ValueError
        If the lengths differ or a value is not a finite number.
    """
    x, y = _finite(a, "a"), _finite(b, "b")
    if x.size != y.size:
        raise ValueError("a and b must be paired: %d values against %d" % (x.size, y.size))
    d, tol = _differences(x, y)
    mean, low, high = mean_ci(d, confidence)
    t, p_t = _t_test(d, tol)
    p_w, method = _wilcoxon(d, tol)
    return dict(n=int(d.size), mean_diff=mean, ci_low=low, ci_high=high, t=t, p_t=p_t,
                p_wilcoxon=p_w, wilcoxon_method=method)


def holm(p_values):
    """Holm–Bonferroni step-down adjusted p-values (Holm, 1979).

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the
    ``i``-th adjusted value is ``max_{j <= i} min(1, (m - j + 1) p_(j))``:
    monotone in the raw p-values and capped at 1. Rejecting where the
    adjusted value is at most ``α`` controls the family-wise error rate at
    ``α`` under any dependence between the tests.

    Parameters
    ----------
    p_values : iterable of float or None
        Raw p-values in [0, 1]; ``None`` entries (tests not done) stay
        ``None`` and do not count towards ``m``.

    Returns
    -------
    list of float or None
        The adjusted p-values, in the order of the input.

    Raises
    ------
    ValueError
        If a p-value is NaN or outside [0, 1].
    """
    p = list(p_values)
    idx = [i for i, v in enumerate(p) if v is not None]
    raw = _finite([p[i] for i in idx], "p-values")
    if np.any((raw < 0) | (raw > 1)):
        raise ValueError("p-values must be in [0, 1]: %r" % (p,))
    m = raw.size
    order = np.argsort(raw, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * raw[order])
    adjusted = np.maximum.accumulate(scaled)
    out = [None] * len(p)
    for k, j in enumerate(order):
        out[idx[j]] = float(adjusted[k])
    return out


def _shared_seeds(ra, rb):
    """Seeds in both ``ra`` and ``rb``, sorted (in ``ra``'s order when the
    seeds cannot be sorted)."""
    shared = [s for s in ra if s in rb]
    try:
        return sorted(shared)
    except TypeError:
        return shared


def pairwise(results, alpha=0.05):
    """Paired tests of every pair of optimizers, Holm-corrected (Holm, 1979).

    Parameters
    ----------
    results : mapping of str to mapping of seed to float
        ``results[name][seed]``: the value (e.g. test error) of optimizer
        ``name`` trained from ``seed``; finished runs only.
    alpha : float, optional
        Family-wise significance level.

    Returns
    -------
    list of dict
        One per unordered pair, in the order of ``results``
        (``itertools.combinations``): ``a``, ``b`` (the names; differences
        are ``a - b``), ``seeds`` (the seeds both have, sorted: the only
        ones used), the fields of :func:`paired_test`, ``p_holm`` (``p_t``
        adjusted by :func:`holm` over all pairs; None when ``p_t`` is None)
        and ``significant`` (``p_holm < alpha``; False when ``p_holm`` is
        None).
    """
    rows = []
    for a, b in itertools.combinations(list(results), 2):
        seeds = _shared_seeds(results[a], results[b])
        test = paired_test([results[a][s] for s in seeds], [results[b][s] for s in seeds])
        rows.append(dict(a=a, b=b, seeds=seeds, **test))
    for row, p in zip(rows, holm(row["p_t"] for row in rows)):
        row["p_holm"] = p
        row["significant"] = p is not None and p < alpha
    return rows


def first_reach(curve, target, key="valid_err", at=("update", "seconds")):
    """Where a run first reached ``target``: a time-to-target measure.

    Parameters
    ----------
    curve : iterable of dict
        The run's validation records in time order, each with ``key`` and
        the fields named in ``at``.
    target : float
        The value of ``key`` to reach (lower is better).
    key : str, optional
        The field compared with ``target``; records where it is None or NaN
        never count as reaching it.
    at : tuple of str, optional
        The fields to report.

    Returns
    -------
    dict or None
        ``{field: record[field] for field in at}`` of the first record with
        ``record[key] <= target``, or None when no record reaches it.
    """
    for record in curve:
        value = record.get(key)
        if value is not None and not math.isnan(value) and value <= target:
            return {field: record[field] for field in at}
    return None


def format_ci(mean, low, high, fmt="%.4f"):
    """``mean [low, high]`` as text, e.g. ``"0.2100 [0.1950, 0.2250]"``.

    Only the mean (``"0.2100"``) when the interval is missing (``low`` or
    ``high`` None: one seed); an em dash ``"—"`` when ``mean`` is None (no
    seeds).
    """
    if mean is None:
        return "\u2014"
    if low is None or high is None:
        return fmt % mean
    return "%s [%s, %s]" % (fmt % mean, fmt % low, fmt % high)
