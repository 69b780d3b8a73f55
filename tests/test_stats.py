"""stats: Student's t (CDF, quantile), summaries over seeds and Welch's t-test against reference values
(scipy 1.17 and closed forms), plus symmetry and monotonicity."""

from __future__ import annotations

import math
import statistics

import pytest

from lrdecay_cli.analysis.stats import holm, incomplete_beta, paired, summarize, t_cdf, t_quantile, t_sf, welch

QUANTILES = [  # (p, df, scipy.stats.t.ppf(p, df))
    (0.975, 1, 12.706204736174694), (0.975, 2, 4.302652729749462), (0.975, 11, 2.200985160091639),
    (0.975, 30, 2.0422724563012378), (0.95, 5, 2.0150483733330233), (0.995, 3.5, 5.085702223091256),
    (0.6, 2.7, 0.27932846331796923), (0.999, 100, 3.173739493738783),
]
TAILS = [  # (t, df, scipy.stats.t.sf(t, df))
    (2.0, 3, 0.06966298427942152), (-0.3, 7.3, 0.613729731910145), (40, 2.2, 0.00017115773828230282),
    (1e-8, 5, 0.4999999962039331), (0.7, 3.3, 0.2650440396616291), (4.5, 1000, 3.7965355132491246e-06),
    (12.0, 1.5, 0.009021014637013932),
]


@pytest.mark.parametrize("p, df, expected", QUANTILES)
def test_t_quantile_matches_reference_values(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-10)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-10)


@pytest.mark.parametrize("t, df, expected", TAILS)
def test_t_sf_matches_reference_values(t, df, expected):
    assert t_sf(t, df) == pytest.approx(expected, rel=1e-10)
    assert t_cdf(-t, df) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("t", [-30.0, -2.5, -1.0, -0.1, 0.0, 0.4, 1.0, 3.0, 50.0])
def test_t_cdf_matches_closed_forms_for_df_1_and_2(t):
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), rel=1e-12)


def test_incomplete_beta_matches_reference_values():
    assert incomplete_beta(2.5, 0.5, 0.3) == pytest.approx(0.018927124071945658, rel=1e-12)
    assert incomplete_beta(0.5, 3, 0.9) == pytest.approx(0.9996750253207289, rel=1e-12)
    assert incomplete_beta(10, 20, 0.35) == pytest.approx(0.5923866636639051, rel=1e-12)
    assert incomplete_beta(3, 4, 0.0) == 0.0 and incomplete_beta(3, 4, 1.0) == 1.0


def test_t_distribution_is_symmetric_monotone_and_inverted_by_the_quantile():
    for df in (0.7, 1, 2.5, 4, 17, 300):
        grid = [x / 4 for x in range(-40, 41)]
        cdf = [t_cdf(x, df) for x in grid]
        assert all(a < b for a, b in zip(cdf, cdf[1:]) if b < 0.5)  # each tail from its own side: at df=300,
        upper = [t_sf(x, df) for x in grid if x >= 0]  # 1 - sf(10) is 1.0 in floats, sf(10) is not
        assert all(a > b for a, b in zip(upper, upper[1:]))
        for x, c in zip(grid, cdf):
            assert c + t_cdf(-x, df) == pytest.approx(1.0, abs=1e-14)
            assert t_sf(x, df) == pytest.approx(1 - c, abs=1e-14)
        for p in (0.001, 0.2, 0.5, 0.9, 0.975, 0.9999):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, rel=1e-12)
    # heavier tails with fewer degrees of freedom, down towards the normal's 1.959964
    quantiles = [t_quantile(0.975, df) for df in (1, 1.5, 2, 3, 5, 10, 30, 100, 1e5)]
    assert all(a > b > 1.959964 for a, b in zip(quantiles, quantiles[1:]))
    assert quantiles[-1] == pytest.approx(1.9599877075346095, rel=1e-9)  # scipy t.ppf(0.975, 1e5)


def test_bad_arguments_are_refused():
    for call in (lambda: t_quantile(1.0, 3), lambda: t_quantile(0.5, 0), lambda: t_sf(1.0, -1),
                 lambda: t_sf(math.nan, 3), lambda: welch([1.0], [1.0, 2.0])):
        with pytest.raises(ValueError):
            call()


def test_summarize_gives_mean_std_and_t_interval():
    values = [0.97, 0.975, 0.968, 0.971]
    summary = summarize(values)
    half = 3.182446305284263 * statistics.stdev(values) / 2  # t.ppf(0.975, 3) * s / sqrt(4)
    assert (summary.n, summary.mean, summary.std) == (4, statistics.fmean(values), statistics.stdev(values))
    assert summary.ci95 == pytest.approx(half, rel=1e-12)
    assert summary.ci95_bounds == pytest.approx((summary.mean - half, summary.mean + half))
    assert summarize([0.9]) == summarize([0.9]).__class__(1, 0.9, None, None)
    assert summarize([]).mean is None and summarize([]).ci95_bounds is None


def test_welch_matches_the_textbook_examples():
    # Welch's t-test examples (Wikipedia, "Welch's t-test"), checked against scipy.stats.ttest_ind(equal_var=False)
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b1 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch(a1, b1)
    assert (result.t, result.df, result.p) == pytest.approx(
        (-2.455356398286006, 24.988529290231416, 0.021378001462866992), rel=1e-9)
    a2 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8]
    b2 = [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5,
          23.5, 21.5, 21.8]
    result = welch(a2, b2)
    assert (result.t, result.df, result.p) == pytest.approx(
        (-1.5654335235985037, 9.904741248650831, 0.14884169660532817), rel=1e-9)


def test_welch_by_hand_with_two_values_each():
    # means 2 and 5, variances 2 and 2: t = -3 / sqrt(2/2 + 2/2), df = 2^2 / (1/1 + 1/1) = 2,
    # p = 2 P(T_2 > |t|) with P(T_2 <= x) = 1/2 + x / (2 sqrt(2 + x^2))
    result = welch([1.0, 3.0], [4.0, 6.0])
    t = -3 / math.sqrt(2)
    assert result.t == pytest.approx(t) and result.df == pytest.approx(2.0)
    assert result.p == pytest.approx(2 * (0.5 - abs(t) / (2 * math.sqrt(2 + t * t))), rel=1e-12)
    swapped = welch([4.0, 6.0], [1.0, 3.0])
    assert swapped.t == -result.t and swapped.p == result.p


def test_welch_without_variance_is_decided_by_the_means():
    assert welch([0.9, 0.9], [0.9, 0.9, 0.9]).p == 1.0
    assert welch([0.9, 0.9], [0.8, 0.8]).p == 0.0


A = [0.9812, 0.9790, 0.9801, 0.9825, 0.9808]
B = [0.9781, 0.9779, 0.9788, 0.9802, 0.9790]
"""Two methods over the same five seeds; the references are scipy 1.x's ttest_rel / ttest_ind(equal_var=False)
with their confidence_interval(0.95)."""


def test_paired_matches_scipy_ttest_rel_and_beats_welch_on_shared_seeds():
    result = paired(A, B)
    assert result.kind == "paired" and result.df == 4
    assert result.t == pytest.approx(5.316948245968365, rel=1e-9)
    assert result.p == pytest.approx(0.006017930185892371, rel=1e-9)
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.0009173995691942544, rel=1e-9),
                                               pytest.approx(0.002922600430805767, rel=1e-9))
    assert result.diff == pytest.approx(sum(A) / 5 - sum(B) / 5, rel=1e-12)
    unpaired = welch(A, B)
    assert unpaired.kind == "Welch" and unpaired.p == pytest.approx(0.02961970891368546, rel=1e-9)
    assert (unpaired.ci_low, unpaired.ci_high) == (pytest.approx(0.0002513843287328427, rel=1e-9),
                                                   pytest.approx(0.003588615671267223, rel=1e-9))
    assert result.p < unpaired.p  # the seed noise both share is gone from the paired difference


def test_paired_without_spread_in_the_differences_is_decided_by_them():
    same = paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same.p == 1.0 and same.diff == same.ci_low == same.ci_high == 0.0
    shifted = paired([0.91, 0.81], [0.9, 0.8])
    assert shifted.p == 0.0 and shifted.t == math.inf
    with pytest.raises(ValueError):
        paired([0.9], [0.8])
    with pytest.raises(ValueError):
        paired([0.9, 0.8], [0.8])


def test_holm_matches_statsmodels_multipletests():
    # statsmodels.stats.multitest.multipletests(ps, method="holm")[1]
    assert holm([0.01, 0.04, 0.03, 0.005, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2], rel=1e-12)
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == [] and holm([0.03]) == [0.03]
