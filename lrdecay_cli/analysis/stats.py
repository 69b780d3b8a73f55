"""Statistics over seeds in plain Python (no scipy in the stack): mean, std, t confidence intervals, paired and
Welch t-tests, Holm's correction.

Student's t CDF is the regularized incomplete beta function (a continued fraction, Numerical Recipes 3rd ed. §6.4, by
the modified Lentz method), its quantile a bisection on that CDF: accurate to about 1e-12 (1e-9 at df near a million).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"incomplete_beta needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); beyond, use I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (NR §6.4, eq. 6.4.5), by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta fraction did not converge (a={a}, b={b}, x={x})")


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df > 0 degrees of freedom (df need not be an integer)."""
    if df <= 0 or math.isnan(t) or math.isnan(df):
        raise ValueError(f"t_sf needs df > 0 and a number t, got t={t}, df={df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    # P(|T| > |t|) = I_x(df/2, 1/2) = 1 - I_y(1/2, df/2), x = df/(df+t^2), y = t^2/(df+t^2) = 1 - x.
    # Take the form whose continued fraction converges directly (the test in incomplete_beta), with
    # x or y as its own expression: neither a tiny tail (large t) nor a t near 0 rounds away in 1 - x.
    x, y = df / (df + t * t), t * t / (df + t * t)
    if x < (df / 2 + 1) / (df / 2 + 2.5):
        tail = incomplete_beta(df / 2, 0.5, x) / 2
    else:
        tail = (1.0 - incomplete_beta(0.5, df / 2, y)) / 2
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    return t_sf(-t, df)


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p: bisection on the CDF (monotone), to the last bits of a float."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and 95% CI half-width of n values; None where n is too small to say."""

    n: int
    mean: float | None
    std: float | None
    ci95: float | None
    """Half-width: mean ± t(0.975, n-1) · std / √n."""

    @property
    def ci95_bounds(self) -> tuple[float, float] | None:
        return None if self.ci95 is None else (self.mean - self.ci95, self.mean + self.ci95)


def summarize(values: list[float]) -> Summary:
    """Summary of values (seeds): the std needs two values, and so does the confidence interval."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    std = statistics.stdev(values) if n > 1 else None
    ci = t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else None
    return Summary(n, mean, std, ci)


@dataclass(frozen=True)
class TTest:
    """A two-sided t-test of mean(a) = mean(b): which (`paired` over shared seeds, or `Welch`), t, df, p, and
    the mean difference a - b with its 95% confidence interval."""

    kind: str
    t: float
    df: float
    p: float
    diff: float
    ci_low: float
    ci_high: float


def _t_test(kind: str, diff: float, se: float, df: float) -> TTest:
    """The test of a difference `diff` with standard error `se`; without spread (se 0) p is 1 for no difference
    and 0 for any other, and the interval is the difference itself."""
    if se == 0:
        return TTest(kind, 0.0 if diff == 0 else math.copysign(math.inf, diff), df, 1.0 if diff == 0 else 0.0,
                     diff, diff, diff)
    t, half = diff / se, t_quantile(0.975, df) * se
    return TTest(kind, t, df, min(1.0, 2 * t_sf(abs(t), df)), diff, diff - half, diff + half)


def welch(a: list[float], b: list[float]) -> TTest:
    """Welch's unequal-variance t-test (Welch–Satterthwaite df); each sample needs two values or more. Without
    variance on both sides, df is n_a + n_b - 2."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs two values per sample, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb else len(a) + len(b) - 2.0
    return _t_test("Welch", statistics.fmean(a) - statistics.fmean(b), math.sqrt(va + vb), df)


def paired(a: list[float], b: list[float]) -> TTest:
    """The paired t-test over a[i] - b[i] (runs on the same seed share initial weights and data order, so
    their difference has no seed noise of its own): n - 1 df; two pairs or more."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"the paired t-test needs two pairs or more, got {len(a)} and {len(b)} values")
    d = [x - y for x, y in zip(a, b)]
    return _t_test("paired", statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d) - 1.0)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (Holm 1979): the k-th smallest times (m - k + 1),
    kept monotone and at most 1; reject where the adjusted p < alpha controls the family-wise error."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - k) * p_values[i]))
        adjusted[i] = running
    return adjusted
