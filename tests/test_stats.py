"""sentiment.experiments.stats: intervals, paired tests, Holm, pairwise tables, time-to-target."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from sentiment.experiments import stats as st

# Student's (1908) sleep data (Cushny and Peebles): extra hours of sleep of the
# same ten patients under two drugs -- R's ``sleep`` data set. R gives, for
# t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9,
# p-value = 0.002833, 95 % CI [-2.4598858, -0.7001142], mean difference -1.58.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


# --------------------------------------------------------------------------- mean_ci

@pytest.mark.parametrize("values", [
    [1.0, 2.0, 3.0, 4.0],
    [0.21, 0.195, 0.225],
    [0.1423, 0.1388],
    [5.0, -3.0, 2.5, 8.25, 0.0, 1.0, 7.5, -2.0, 4.0, 3.3],
])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_is_scipy_t_interval(values, confidence):
    x = np.asarray(values)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    mean, lo, hi = st.mean_ci(values, confidence)
    assert mean == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx((low, high), rel=1e-12)


def test_mean_ci_hand_computed():
    # s = sqrt(5/3) = 1.29099, s/sqrt(4) = 0.645497, t_{0.975,3} = 3.182446:
    # half-width 3.182446 * 0.645497 = 2.054260
    mean, low, high = st.mean_ci([1, 2, 3, 4])
    assert mean == 2.5
    assert (high - low) / 2 == pytest.approx(2.054260, abs=1e-6)
    assert (low, high) == pytest.approx((0.445740, 4.554260), abs=1e-6)
    assert all(type(v) is float for v in (mean, low, high))


@pytest.mark.parametrize("values, expected", [
    ([], (None, None, None)),
    ([0.25], (0.25, None, None)),
    ((v for v in [0.3]), (0.3, None, None)),
    ([0.2, 0.2, 0.2], (0.2, 0.2, 0.2)),
])
def test_mean_ci_small_and_degenerate(values, expected):
    out = st.mean_ci(values)
    assert [v is None for v in out] == [v is None for v in expected]
    assert [v for v in out if v is not None] == pytest.approx([v for v in expected
                                                               if v is not None])


@pytest.mark.parametrize("values", [[0.1, float("nan")], [0.1, None], [0.1, math.inf], ["x"]])
def test_mean_ci_refuses_non_finite(values):
    with pytest.raises(ValueError):
        st.mean_ci(values)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95, -0.5])
def test_mean_ci_refuses_bad_confidence(confidence):
    with pytest.raises(ValueError):
        st.mean_ci([1.0, 2.0], confidence)


# ----------------------------------------------------------------------- paired_test

def test_paired_test_on_student_sleep_data():
    r = st.paired_test(SLEEP_1, SLEEP_2)
    ref = stats.ttest_rel(SLEEP_1, SLEEP_2)
    assert r["n"] == 10
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert r["p_t"] == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # R's published numbers
    assert r["mean_diff"] == pytest.approx(-1.58)
    assert r["t"] == pytest.approx(-4.0621, abs=1e-4)
    assert r["p_t"] == pytest.approx(0.002833, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)
    # one zero difference and a tie (-1.3, -1.3): exact given the ties, by sign flips
    assert r["wilcoxon_method"] == "permutation"
    ref_w = stats.wilcoxon(SLEEP_1, SLEEP_2, method=stats.PermutationMethod())
    assert r["p_wilcoxon"] == pytest.approx(ref_w.pvalue, rel=1e-12)
    # all nine non-zero differences negative: 2 of the 2**9 sign patterns are as extreme
    assert r["p_wilcoxon"] == pytest.approx(2 / 2 ** 9)


@pytest.mark.parametrize("diffs", [
    [1, -2, 3, 4, -5, 6, 7, 8],
    [0.011, -0.004, 0.027, 0.019, 0.008],
    [-3, -1, 2],
])
def test_paired_test_exact_wilcoxon_without_ties(diffs):
    b = np.linspace(0.1, 0.3, len(diffs))
    a = b + np.asarray(diffs)
    r = st.paired_test(a, b)
    assert r["wilcoxon_method"] == "exact"
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b, method="exact").pvalue,
                                            rel=1e-12)
    ref = stats.ttest_rel(a, b)
    assert (r["t"], r["p_t"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)


@pytest.mark.parametrize("n, p", [(2, 0.5), (3, 0.25), (5, 0.0625), (6, 0.03125)])
def test_wilcoxon_floor_with_few_seeds(n, p):
    """All differences the same sign: the smallest two-sided p is 2 / 2**n."""
    b = [0.2] * n
    a = [0.2 + 0.01 * (i + 1) for i in range(n)]
    assert st.paired_test(a, b)["p_wilcoxon"] == pytest.approx(p)


def test_floating_point_near_ties_count_as_ties():
    a, b = [0.3, 0.5, 0.9, 0.4], [0.1, 0.3, 0.6, 0.45]  # 0.19999999999999998 and 0.2
    r = st.paired_test(a, b)
    assert r["wilcoxon_method"] == "permutation"
    ref = stats.wilcoxon([0.2, 0.2, 0.3, -0.05], method=stats.PermutationMethod())
    assert r["p_wilcoxon"] == pytest.approx(ref.pvalue)
    assert r["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_many_tied_differences_use_the_normal_approximation():
    rng = np.random.default_rng(3)
    d = np.round(rng.normal(0.01, 0.02, size=20), 2)  # rounded: ties
    b = np.full(20, 0.2)
    a = b + d
    r = st.paired_test(a, b)
    assert r["wilcoxon_method"] == "asymptotic"
    ref = stats.wilcoxon(np.round(a - b, 12), method="asymptotic")
    assert r["p_wilcoxon"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_paired_test_equal_inputs():
    a = [0.21, 0.19, 0.2, 0.23]
    r = st.paired_test(a, list(a))
    assert r == dict(n=4, mean_diff=0.0, ci_low=0.0, ci_high=0.0, t=0.0, p_t=1.0,
                     p_wilcoxon=None, wilcoxon_method=None)


def test_paired_test_constant_nonzero_difference():
    r = st.paired_test([0.25, 0.5, 0.75], [0.0, 0.25, 0.5])
    assert r["t"] == math.inf and r["p_t"] == 0.0
    assert r["mean_diff"] == r["ci_low"] == r["ci_high"] == 0.25
    r = st.paired_test([0.0, 0.25, 0.5], [0.25, 0.5, 0.75])
    assert r["t"] == -math.inf and r["p_t"] == 0.0


def test_paired_test_difference_constant_up_to_rounding():
    # 0.2 - 0.3, 0.21 - 0.31 and 0.19 - 0.29 differ in the last bits only
    a, b = [0.2, 0.21, 0.19, 0.205], [0.3, 0.31, 0.29, 0.305]
    assert np.ptp(np.subtract(a, b)) > 0
    r = st.paired_test(a, b)
    assert r["t"] == -math.inf and r["p_t"] == 0.0
    assert r["mean_diff"] == pytest.approx(-0.1)
    assert r["wilcoxon_method"] == "permutation"  # four tied differences
    assert r["p_wilcoxon"] == pytest.approx(2 / 2 ** 4)
    # equal up to rounding: no difference at all
    r = st.paired_test([0.1 + 0.2, 0.7], [0.3, 0.7])
    assert (r["t"], r["p_t"], r["p_wilcoxon"], r["mean_diff"]) == (0.0, 1.0, None, 0.0)


@pytest.mark.parametrize("a, b, mean", [([0.3], [0.2], 0.1), ([], [], None)])
def test_paired_test_too_few_pairs(a, b, mean):
    r = st.paired_test(a, b)
    assert r["n"] == len(a)
    if mean is None:
        assert r["mean_diff"] is None
    else:
        assert r["mean_diff"] == pytest.approx(mean)
    assert [r[k] for k in ("ci_low", "ci_high", "t", "p_t", "p_wilcoxon", "wilcoxon_method")] \
        == [None] * 6


@pytest.mark.parametrize("a, b", [([0.1, 0.2], [0.1]), ([0.1, float("nan")], [0.1, 0.2]),
                                  ([0.1, 0.2], [None, 0.2])])
def test_paired_test_refuses_bad_input(a, b):
    with pytest.raises(ValueError):
        st.paired_test(a, b)


# ----------------------------------------------------------------------------- holm

def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("p, expected", [
    ([], []),
    ([0.2], [0.2]),
    ([None, 0.01, None, 0.04], [None, 0.02, None, 0.04]),
    ([None], [None]),
    ([0.5, 0.6, 0.9], [1.0, 1.0, 1.0]),
    ([0.02, 0.02], [0.04, 0.04]),
    ([0.0, 1.0], [0.0, 1.0]),
])
def test_holm_small_cases(p, expected):
    out = st.holm(p)
    assert [v is None for v in out] == [v is None for v in expected]
    assert [v for v in out if v is not None] == pytest.approx([v for v in expected
                                                               if v is not None])


def _holm_rejects(p, alpha):
    """Holm's sequentially rejective procedure, as stated in the paper."""
    m = len(p)
    rejected = set()
    for j, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] > alpha / (m - j):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("seed", range(8))
def test_holm_monotone_capped_and_equivalent_to_step_down(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 12))
    p = list(rng.uniform(0, 1, m) ** 3)  # many small ones
    adj = st.holm(p)
    assert all(raw <= a <= 1.0 for raw, a in zip(p, adj))
    for i, j in itertools.permutations(range(m), 2):
        if p[i] <= p[j]:
            assert adj[i] <= adj[j]
    assert min(adj) == pytest.approx(min(1.0, m * min(p)))
    for alpha in (0.01, 0.05, 0.1, 0.25):
        assert {i for i, a in enumerate(adj) if a <= alpha} == _holm_rejects(p, alpha)


@pytest.mark.parametrize("p", [[0.1, float("nan")], [1.5], [-0.1, 0.2]])
def test_holm_refuses_bad_p_values(p):
    with pytest.raises(ValueError):
        st.holm(p)


# ------------------------------------------------------------------------- pairwise

def test_pairwise_uses_only_shared_seeds():
    results = {"sgd": {1: 0.30, 2: 0.28, 3: 0.31, 4: 0.29},
               "adam": {5: 0.20, 4: 0.22, 3: 0.21, 2: 0.23}}
    (row,) = st.pairwise(results)
    assert (row["a"], row["b"], row["seeds"]) == ("sgd", "adam", [2, 3, 4])
    expected = st.paired_test([0.28, 0.31, 0.29], [0.23, 0.21, 0.22])
    assert {k: row[k] for k in expected} == expected
    assert row["p_holm"] == pytest.approx(row["p_t"])  # one pair: nothing to correct


def test_pairwise_flags_a_consistent_difference_but_not_noise():
    rng = np.random.default_rng(0)
    seeds = [11, 12, 13, 14, 15, 16]
    base = rng.uniform(0.18, 0.24, len(seeds))
    worse = base + 0.05 + np.array([0.002, -0.001, 0.0015, -0.002, 0.001, -0.0005])
    noisy = base + np.array([0.001, -0.002, 0.0015, -0.001, 0.002, -0.0015])
    results = {"adadelta": dict(zip(seeds, base)), "sgd": dict(zip(seeds, worse)),
               "rmsprop": dict(zip(seeds, noisy))}
    rows = st.pairwise(results)
    assert [(r["a"], r["b"]) for r in rows] == [("adadelta", "sgd"), ("adadelta", "rmsprop"),
                                                ("sgd", "rmsprop")]
    by = {(r["a"], r["b"]): r for r in rows}
    assert by["adadelta", "sgd"]["significant"] and by["sgd", "rmsprop"]["significant"]
    assert by["adadelta", "sgd"]["mean_diff"] == pytest.approx(-0.05, abs=1e-3)
    assert by["adadelta", "sgd"]["p_holm"] < 1e-6
    assert not by["adadelta", "rmsprop"]["significant"]
    assert by["adadelta", "rmsprop"]["p_holm"] > 0.5
    assert [r["p_holm"] for r in rows] == pytest.approx(st.holm([r["p_t"] for r in rows]))
    assert all(r["seeds"] == seeds and r["n"] == 6 for r in rows)


def test_pairwise_pair_without_enough_seeds_is_not_significant():
    results = {"a": {1: 0.2, 2: 0.21, 3: 0.19}, "b": {1: 0.3, 2: 0.31, 3: 0.29},
               "c": {3: 0.5}}
    rows = st.pairwise(results, alpha=0.05)
    by = {(r["a"], r["b"]): r for r in rows}
    assert by["a", "c"]["seeds"] == [3] and by["a", "c"]["p_t"] is None
    assert by["a", "c"]["p_holm"] is None and by["a", "c"]["significant"] is False
    # only one p-value counted by Holm: a-b (constant difference) unadjusted
    assert by["a", "b"]["p_t"] == 0.0 and by["a", "b"]["p_holm"] == 0.0
    assert by["a", "b"]["significant"] is True


def test_pairwise_degenerate_inputs():
    assert st.pairwise({}) == []
    assert st.pairwise({"only": {1: 0.2}}) == []
    (row,) = st.pairwise({"a": {1: 0.2}, "b": {2: 0.3}})
    assert row["seeds"] == [] and row["n"] == 0 and row["mean_diff"] is None
    assert row["significant"] is False


# ---------------------------------------------------------------------- first_reach

CURVE = [
    dict(update=100, seconds=1.5, valid_err=0.40),
    dict(update=200, seconds=3.0, valid_err=None),
    dict(update=300, seconds=4.5, valid_err=float("nan")),
    dict(update=400, seconds=6.0, valid_err=0.25),
    dict(update=500, seconds=7.5, valid_err=0.20),
    dict(update=600, seconds=9.0, valid_err=0.18),
]


@pytest.mark.parametrize("target, expected", [
    (0.5, dict(update=100, seconds=1.5)),
    (0.25, dict(update=400, seconds=6.0)),   # equality counts
    (0.22, dict(update=500, seconds=7.5)),
    (0.18, dict(update=600, seconds=9.0)),
    (0.10, None),
])
def test_first_reach(target, expected):
    assert st.first_reach(CURVE, target) == expected


def test_first_reach_other_key_and_fields_and_empty_curve():
    curve = [dict(update=1, seconds=2.0, epoch=0, train_err=0.3),
             dict(update=2, seconds=4.0, epoch=1, train_err=0.1)]
    assert st.first_reach(curve, 0.2, key="train_err", at=("epoch",)) == dict(epoch=1)
    assert st.first_reach([], 0.2) is None
    assert st.first_reach(iter(CURVE), 0.2) == dict(update=500, seconds=7.5)


# ------------------------------------------------------------------------ format_ci

@pytest.mark.parametrize("args, kw, text", [
    ((0.21, 0.195, 0.225), {}, "0.2100 [0.1950, 0.2250]"),
    ((0.21, None, None), {}, "0.2100"),
    ((None, None, None), {}, "\u2014"),
    ((0.21, 0.195, 0.225), dict(fmt="%.1f%%"), "0.2% [0.2%, 0.2%]"),
    ((21.0, 19.5, 22.5), dict(fmt="%.1f"), "21.0 [19.5, 22.5]"),
    (st.mean_ci([0.2]), {}, "0.2000"),
    (st.mean_ci([]), {}, "\u2014"),
])
def test_format_ci(args, kw, text):
    assert st.format_ci(*args, **kw) == text
