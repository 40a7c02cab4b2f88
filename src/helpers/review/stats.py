"""Statistics of the verification loop: hit rates with CIs, Fisher's test, power, rounds.

Few verified cases make every comparison weak (docs/domain.md, lesson 8), so every rate carries its
95% interval, the high-vs-low comparison uses Fisher's exact test, and the sample is sized by a
power analysis before anyone is asked. All functions are pure: plain numbers or DataFrames in,
DataFrames or dicts out.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import binom, fisher_exact
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from helpers import MimamoriError

CI_METHODS = {"wilson": "wilson", "exact": "beta"}


def rate_ci(
    positives: int, reviewed: int, alpha: float = 0.05, method: str = "wilson"
) -> tuple[float, float, float]:
    """(rate, low, high) for ``positives`` of ``reviewed``; NaNs when nobody was reviewed.

    ``method`` is ``wilson`` (score interval) or ``exact`` (Clopper-Pearson).
    """
    if method not in CI_METHODS:
        raise MimamoriError(f"review: unknown CI method {method!r} (use {sorted(CI_METHODS)})")
    if reviewed <= 0:
        return (math.nan, math.nan, math.nan)
    if not 0 <= positives <= reviewed:
        raise MimamoriError(
            f"review: {positives} positives out of {reviewed} reviewed is impossible"
        )
    low, high = proportion_confint(positives, reviewed, alpha=alpha, method=CI_METHODS[method])
    return (positives / reviewed, float(low), float(high))


def fisher_high_low(
    high_positive: int,
    high_reviewed: int,
    low_positive: int,
    low_reviewed: int,
    alternative: str = "two-sided",
) -> float:
    """Fisher's exact p-value for the 2x2 table high/low x needs-support yes/no (NaN if an arm is empty)."""
    if high_reviewed <= 0 or low_reviewed <= 0:
        return math.nan
    table = [
        [high_positive, high_reviewed - high_positive],
        [low_positive, low_reviewed - low_positive],
    ]
    return float(fisher_exact(table, alternative=alternative).pvalue)


def arm_rates(verdicts: pd.DataFrame, alpha: float = 0.05, method: str = "wilson") -> pd.DataFrame:
    """Needs-support rate per arm from one row per reviewed child (columns ``arm``, ``needs_support``).

    Returns one row per arm (high, low) with reviewed, positive, rate, ci_low, ci_high.
    """
    rows = []
    for arm in ("high", "low"):
        part = verdicts.loc[verdicts["arm"] == arm, "needs_support"]
        n, x = int(part.shape[0]), int(part.astype(bool).sum())
        rate, low, high = rate_ci(x, n, alpha, method)
        rows.append(
            {"arm": arm, "reviewed": n, "positive": x, "rate": rate, "ci_low": low, "ci_high": high}
        )
    return pd.DataFrame(rows)


ROUND_COLUMNS = ("round", "high_reviewed", "high_positive", "low_reviewed", "low_positive")


def compare_rounds(
    rounds: pd.DataFrame, alpha: float = 0.05, method: str = "wilson"
) -> pd.DataFrame:
    """The reference's two-year table, with rates, CIs, Fisher's p and the ratio to the first round.

    ``high_ratio_vs_first`` is each round's high-score rate divided by the first round's (the
    reference: 22.9% / 6.3% = 3.7x).
    """
    missing = [c for c in ROUND_COLUMNS if c not in rounds.columns]
    if missing:
        raise MimamoriError(f"review: rounds table lacks columns {missing}")
    out = rounds.loc[:, list(ROUND_COLUMNS)].reset_index(drop=True).copy()
    for arm in ("high", "low"):
        cis = [
            rate_ci(int(x), int(n), alpha, method)
            for x, n in zip(out[f"{arm}_positive"], out[f"{arm}_reviewed"], strict=True)
        ]
        out[f"{arm}_rate"] = [c[0] for c in cis]
        out[f"{arm}_ci_low"] = [c[1] for c in cis]
        out[f"{arm}_ci_high"] = [c[2] for c in cis]
    out["fisher_p"] = [
        fisher_high_low(
            int(r.high_positive), int(r.high_reviewed), int(r.low_positive), int(r.low_reviewed)
        )
        for r in out.itertuples(index=False)
    ]
    first = out["high_rate"].iloc[0] if len(out) else math.nan
    out["high_ratio_vs_first"] = out["high_rate"] / first if first and first > 0 else math.nan
    return out


def item_prevalence(
    reviewed: pd.DataFrame,
    items: list[str],
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Share of children with each item among needs-support vs not (ratio and difference).

    ``reviewed`` has a boolean ``needs_support`` and 0/1 item columns (NaN = unknown, left out
    of that item's denominator, never counted as 0). Reference: 生活保護 75.0% vs 16.7% = 4.5x.
    """
    support = reviewed["needs_support"].astype(bool).to_numpy()
    rows = []
    for item in items:
        values = pd.to_numeric(reviewed[item], errors="coerce").astype(float)
        known = values.notna().to_numpy()
        has = (values.fillna(0) > 0).to_numpy()
        n_s, n_o = int((known & support).sum()), int((known & ~support).sum())
        x_s, x_o = int((has & support).sum()), int((has & ~support).sum())
        p_s = x_s / n_s if n_s else math.nan
        p_o = x_o / n_o if n_o else math.nan
        rows.append(
            {
                "item": item,
                "label": (labels or {}).get(item, item),
                "support_with_item": x_s,
                "support_known": n_s,
                "prevalence_support": p_s,
                "other_with_item": x_o,
                "other_known": n_o,
                "prevalence_other": p_o,
                "ratio": p_s / p_o if n_s and n_o and p_o > 0 else math.nan,
                "difference": p_s - p_o,
            }
        )
    return pd.DataFrame(rows, columns=PREVALENCE_COLUMNS)


PREVALENCE_COLUMNS = [
    "item",
    "label",
    "support_with_item",
    "support_known",
    "prevalence_support",
    "other_with_item",
    "other_known",
    "prevalence_other",
    "ratio",
    "difference",
]


# ----------------------------------------------------------------------------------- power
def sample_size(
    p_high: float, p_low: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> dict:
    """Reviews needed in the high arm (and ``ratio`` times that in the low arm), normal approximation
    on Cohen's h (statsmodels ``NormalIndPower`` + ``proportion_effectsize``), two-sided."""
    _check_rates(p_high, p_low)
    h = float(proportion_effectsize(p_high, p_low))
    if h == 0:
        raise MimamoriError(
            "review: power analysis needs different expected rates for the two arms"
        )
    n_high = float(
        NormalIndPower().solve_power(
            effect_size=abs(h),
            nobs1=None,
            alpha=alpha,
            power=power,
            ratio=ratio,
            alternative="two-sided",
        )
    )
    return {
        "effect_size_h": h,
        "n_high_exact": n_high,
        "n_high": math.ceil(n_high),
        "n_low": math.ceil(n_high * ratio),
        "ratio": ratio,
    }


def normal_power(
    p_high: float, p_low: float, n_high: int, n_low: int, alpha: float = 0.05
) -> float:
    """Power of the normal-approximation test for the planned arm sizes."""
    _check_rates(p_high, p_low)
    if n_high <= 0 or n_low <= 0:
        return math.nan
    h = abs(float(proportion_effectsize(p_high, p_low)))
    return float(
        NormalIndPower().power(
            effect_size=h, nobs1=n_high, alpha=alpha, ratio=n_low / n_high, alternative="two-sided"
        )
    )


def detectable_high_rate(
    p_low: float, n_high: int, n_low: int, alpha: float = 0.05, power: float = 0.8
) -> dict:
    """Smallest high-arm rate (and difference) detectable against ``p_low`` with these arm sizes."""
    if n_high <= 0 or n_low <= 0:
        return {"effect_size_h": math.nan, "p_high": math.nan, "difference": math.nan}
    try:
        h = float(
            NormalIndPower().solve_power(
                effect_size=None,
                nobs1=n_high,
                alpha=alpha,
                power=power,
                ratio=n_low / n_high,
                alternative="two-sided",
            )
        )
    except (ValueError, RuntimeError):  # solver fails when nothing is detectable
        h = math.nan
    angle = math.asin(math.sqrt(p_low)) + h / 2 if not math.isnan(h) else math.nan
    p_high = math.sin(angle) ** 2 if not math.isnan(angle) and angle <= math.pi / 2 else math.nan
    return {"effect_size_h": h, "p_high": p_high, "difference": p_high - p_low}


def _hypergeom_table(n_high: int, n_low: int) -> np.ndarray:
    """pmf[x, t]: probability that x of t positives fall in the high arm (fixed margins),
    from log-factorials (0 outside the support)."""
    total = n_high + n_low
    lf = gammaln(np.arange(total + 1) + 1.0)  # lf[n] = log(n!)
    x = np.arange(n_high + 1)[:, None]
    t = np.arange(total + 1)[None, :]
    y = t - x
    ok = (y >= 0) & (y <= n_low)
    yc = np.clip(y, 0, n_low)
    logp = (
        lf[n_high]
        - lf[x]
        - lf[n_high - x]
        + lf[n_low]
        - lf[yc]
        - lf[n_low - yc]
        - (lf[total] - lf[t] - lf[total - t])
    )
    return np.where(ok, np.exp(logp), 0.0)


@lru_cache(maxsize=32)
def fisher_pvalue_grid(n_high: int, n_low: int) -> np.ndarray:
    """Two-sided Fisher p-value of every table: ``grid[x_high, x_low]``, same rule as scipy.

    Tables with the same margins share one hypergeometric distribution, so each margin is one
    vectorised step instead of one scipy call per table.
    """
    grid = np.ones((n_high + 1, n_low + 1))
    total = n_high + n_low
    # every margin's hypergeometric pmf at once: pmf[x, t] (0 outside the support)
    pmf = _hypergeom_table(n_high, n_low)
    ordered = np.sort(pmf, axis=0)
    cumulative = np.cumsum(ordered, axis=0)
    for t in range(total + 1):
        x = np.arange(max(0, t - n_low), min(t, n_high) + 1)
        # p(x) = sum of pmf(y) over pmf(y) <= pmf(x) * (1 + 1e-7) (scipy's relative tolerance)
        idx = np.searchsorted(ordered[:, t], pmf[x, t] * (1 + 1e-7), side="right") - 1
        grid[x, t - x] = np.minimum(cumulative[idx, t], 1.0)
    grid.flags.writeable = False  # cached: shared between callers (power curves reuse it)
    return grid


def fisher_exact_power(
    p_high: float, p_low: float, n_high: int, n_low: int, alpha: float = 0.05
) -> float:
    """Exact power of Fisher's two-sided test: P(p < alpha) under binomial arms with these rates."""
    _check_rates(p_high, p_low)
    if n_high <= 0 or n_low <= 0:
        return math.nan
    grid = fisher_pvalue_grid(n_high, n_low)
    prob = np.outer(
        binom.pmf(np.arange(n_high + 1), n_high, p_high),
        binom.pmf(np.arange(n_low + 1), n_low, p_low),
    )
    return float(prob[grid < alpha].sum())


MAX_EXACT_N = 3000  # the exact search gives up past this many reviews in the high arm


def _low_arm(n_high: int, ratio: float) -> int:
    return max(1, math.ceil(n_high * ratio - 1e-9))


def fisher_sample_size(
    p_high: float, p_low: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> dict:
    """Reviews needed for Fisher's exact two-sided test (the test the results report runs).

    The smallest ``n_high`` (low arm ``ceil(ratio * n_high)``) whose exact power reaches
    ``power``. Exact power is not monotone in n (it saw-tooths with the discrete rejection
    region), so the answer is also checked to stay at or above the target for the next
    ``n_high`` values; the search starts below the normal approximation's answer, which for
    rare outcomes is optimistic. The normal approximation is returned beside it.
    """
    normal = sample_size(p_high, p_low, alpha, power, ratio)
    n = max(2, int(normal["n_high"] * 0.6))
    while n <= MAX_EXACT_N:
        if all(
            fisher_exact_power(p_high, p_low, m, _low_arm(m, ratio), alpha) >= power
            for m in (n, n + 1, n + 2)
        ):
            return {
                "n_high": n,
                "n_low": _low_arm(n, ratio),
                "ratio": ratio,
                "power": fisher_exact_power(p_high, p_low, n, _low_arm(n, ratio), alpha),
                "normal_n_high": normal["n_high"],
                "normal_n_low": normal["n_low"],
            }
        n += 1
    raise MimamoriError(
        f"review: Fisher's exact test needs more than {MAX_EXACT_N} reviews per "
        f"arm to detect {p_high:.0%} vs {p_low:.0%} (config review.power)"
    )


def power_table(
    p_high: float,
    p_low: float,
    n_high: int,
    n_low: int,
    alpha: float = 0.05,
    power: float = 0.8,
    response_rate: float | None = None,
) -> pd.DataFrame:
    """The list report's power analysis, by the test the results report runs (Fisher exact).

    Rows: reviews needed with equal allocation and with the planned allocation (exact search;
    the normal approximation's n beside it), the planned sample as drawn, and (when
    ``response_rate`` is given) the sample expected back after non-response.
    """
    rows = []
    for name, ratio in (
        ("必要数：等配分（needed, 1:1）", 1.0),
        ("必要数：計画配分（needed, planned ratio）", n_low / n_high if n_high else 1.0),
    ):
        s = fisher_sample_size(p_high, p_low, alpha, power, ratio)
        rows.append(
            {
                "scenario": name,
                "n_high": s["n_high"],
                "n_low": s["n_low"],
                "power_fisher": s["power"],
                "normal_n_high": s["normal_n_high"],
                "normal_n_low": s["normal_n_low"],
                "power_normal": normal_power(p_high, p_low, s["n_high"], s["n_low"], alpha),
            }
        )
    plans = [("計画標本（planned sample）", n_high, n_low)]
    if response_rate is not None:
        plans.append(
            (
                f"回答見込み {response_rate:.0%}（expected returns）",
                int(round(n_high * response_rate)),
                int(round(n_low * response_rate)),
            )
        )
    for name, nh, nl in plans:
        rows.append(
            {
                "scenario": name,
                "n_high": nh,
                "n_low": nl,
                "power_fisher": fisher_exact_power(p_high, p_low, nh, nl, alpha),
                "normal_n_high": math.nan,
                "normal_n_low": math.nan,
                "power_normal": normal_power(p_high, p_low, nh, nl, alpha),
            }
        )
    out = pd.DataFrame(rows)
    detect = [
        fisher_detectable_high_rate(p_low, int(r.n_high), int(r.n_low), alpha, power)
        for r in out.itertuples()
    ]
    out["detectable_high_rate"] = detect
    out["detectable_difference"] = out["detectable_high_rate"] - p_low
    out["detectable_high_rate_normal"] = [
        detectable_high_rate(p_low, int(r.n_high), int(r.n_low), alpha, power)["p_high"]
        for r in out.itertuples()
    ]
    return out


def fisher_detectable_high_rate(
    p_low: float, n_high: int, n_low: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true high-arm rate Fisher's exact test detects against ``p_low`` with ``power``
    at these arm sizes (bisection: exact power rises with the high-arm rate); NaN when even a
    rate of 1 is not detected."""
    if n_high <= 0 or n_low <= 0 or fisher_exact_power(1.0, p_low, n_high, n_low, alpha) < power:
        return math.nan
    lo, hi = p_low, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if fisher_exact_power(mid, p_low, n_high, n_low, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def percent(rate: float, digits: int = 1) -> str:
    """A rate as the reports print it, rounded half up as people do (1/16 -> "6.3%", not 6.2)."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "–"
    value = Decimal(repr(float(rate) * 100)).quantize(
        Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP
    )
    return f"{value}%"


def _check_rates(*rates: float) -> None:
    for r in rates:
        if not 0 <= r <= 1:
            raise MimamoriError(
                f"review: expected rate {r} is not between 0 and 1 (config review.power)"
            )
