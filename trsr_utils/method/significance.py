"""Which differences between systems are real: paired tests over the same test users (notebooks 07 and 08).

Every system ranks the same users' candidates, so two systems are compared user by user: the difference of a
per-user metric (Recall@K is 0 or 1 per user, MRR@K and NDCG@K lie in [0, 1]), its mean, a paired bootstrap
interval (``scipy.stats.bootstrap(..., paired=True)``), and a paired permutation test (each user's two values
swapped at random, i.e. the sign of the difference flipped: ``scipy.stats.permutation_test`` with
``permutation_type="samples"``). A family of comparisons gets Holm's step-down correction, so that "significant"
keeps its 5% meaning across the family.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from trsr_utils.method import metrics
from trsr_utils.core.schema import LLM_ROWS

METRICS = ("recall@10", "mrr@10", "ndcg@10")
ALPHA = 0.05


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_difference(a: Sequence[float], b: Sequence[float], n_resamples: int = 9999, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over users, its paired bootstrap interval and the two-sided permutation p-value."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equally long 1-d samples of at least 2 users, got {a.shape} and {b.shape}")
    diff = a - b
    mean = float(diff.mean())
    if np.ptp(diff) == 0:  # every user moved by the same amount: no spread to resample
        low = high = mean
    else:
        ci = stats.bootstrap((a, b), _mean_difference, paired=True, vectorized=True, n_resamples=n_resamples,
                             confidence_level=level, method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(ci.confidence_interval.low), float(ci.confidence_interval.high)
    moved = diff != 0
    if moved.sum() <= 1:  # no user, or one user and its mirror image: every sign pattern is as extreme
        p = 1.0
    else:
        # A user whose two values are equal has nothing to flip. With few users who differ, every sign pattern of
        # theirs is enumerated (scipy is exact when n_resamples covers all 2^k): one differing user gives p = 1,
        # not a Monte Carlo estimate near it. With more, the random flips over all users, as before.
        exact = 2 ** int(moved.sum()) <= n_resamples
        x, y = (a[moved], b[moved]) if exact else (a, b)
        test = stats.permutation_test((x, y), _mean_difference, permutation_type="samples", vectorized=True,
                                      n_resamples=n_resamples, alternative="two-sided",
                                      random_state=np.random.default_rng(seed))
        p = float(test.pvalue)
    return {"diff": mean, "low": low, "high": high, "p": p, "sd": float(diff.std(ddof=1)), "users": len(diff)}


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): reject where adjusted p < alpha."""
    p = np.asarray(list(pvalues), dtype=np.float64)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def users_needed(sd: float, delta: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Users a paired test needs to detect a mean difference ``delta`` with ``power``, given the per-user sd of the
    difference (normal approximation: n = ((z_{1-alpha/2} + z_power) sd / delta)^2)."""
    if delta == 0 or not math.isfinite(sd) or not math.isfinite(delta):
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil((z * sd / abs(delta)) ** 2))


def equivalence(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = ALPHA) -> dict[str, float]:
    """Two one-sided tests (TOST) that the mean paired difference ``a - b`` lies within ``(-margin, margin)``.

    H0 is "the difference is at least ``margin`` in size"; rejecting both one-sided nulls (t-tests on the per-user
    differences: mean > -margin and mean < margin) shows equivalence. The p-value is the larger of the two; the
    (1 - 2 alpha) interval of the mean lies inside the margin exactly when p < alpha.

    When no user's value differs at all, a t-test has no spread to work with. Then the question is how often users
    could differ while none of these ``n`` did: per-user values in [0, 1] move the mean by at most the share of
    users that change, and seeing 0 of ``n`` change has probability ``(1 - margin)^n`` if that share were
    ``margin`` (the exact binomial test; its bound ``1 - alpha^(1/n)`` is the "rule of three", about 3/n)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2 or margin <= 0:
        raise ValueError(f"need at least 2 paired users and a positive margin, got {d.shape} and {margin}")
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    if sd == 0 and mean == 0:  # no user changed
        p_low = p_high = float((1 - margin) ** n)
        bound = 1 - alpha ** (1 / n)
        low, high = -bound, bound
    elif sd == 0:  # every user moved by the same amount: known exactly
        p_low = p_high = 0.0 if abs(mean) < margin else 1.0
        low = high = mean
    else:
        se = sd / math.sqrt(n)
        p_low = float(stats.t.sf((mean + margin) / se, n - 1))  # H0: mean <= -margin
        p_high = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
        half = float(stats.t.ppf(1 - alpha, n - 1)) * se
        low, high = mean - half, mean + half
    p = max(p_low, p_high)
    return {"diff": mean, "margin": margin, "p_lower": p_low, "p_upper": p_high, "p": p, "low": low, "high": high,
            "equivalent": p < alpha, "sd": sd, "users": n}


def users_needed_equivalence(sd: float, margin: float, true_diff: float = 0.0, alpha: float = ALPHA,
                             power: float = 0.8) -> int | None:
    """Users a TOST needs to show equivalence within ``margin`` with ``power`` when the true difference is
    ``true_diff`` (normal approximation: n = ((z_{1-alpha} + z_{1-beta/2}) sd / (margin - |true_diff|))^2 at a
    true difference of 0, z_{1-beta} otherwise)."""
    gap = margin - abs(true_diff)
    if gap <= 0 or not math.isfinite(sd):
        return None
    if sd == 0:  # no user changed: the exact binomial bound of :func:`equivalence`, (1 - margin)^n < alpha
        return max(2, math.floor(math.log(alpha) / math.log(1 - margin)) + 1)
    z_beta = stats.norm.ppf(1 - (1 - power) / 2) if true_diff == 0 else stats.norm.ppf(power)
    return max(2, math.ceil(((stats.norm.ppf(1 - alpha) + z_beta) * sd / gap) ** 2))


def p_text(p: float, name: str = "p") -> str:
    """A p-value as the readings print it: "p = 0.034", or "p < 0.001" where three decimals would print 0.000
    (a permutation or sign-flip p is never 0)."""
    return f"{name} < 0.001" if p < 0.001 else f"{name} = {p:.3f}"


def decision(difference: Mapping[str, float], tost: Mapping[str, float], metric: str = "recall@10") -> str:
    """The answer to "does A differ from B?" in one sentence: shown (Holm p < alpha), bounded (TOST p < alpha:
    within the margin), or undecided, with the users a decision would need."""
    d, m, n = difference["diff"], tost["margin"], int(tost["users"])
    if difference.get("p_holm", difference["p"]) < ALPHA:
        return f"shown: {d:+.3f} {metric} ({p_text(difference.get('p_holm', difference['p']), 'Holm p')}) on {n} users"
    if tost["equivalent"]:
        # how far inside the margin the interval's nearer end lies, in users' hits (one user moves a mean by 1/n):
        # a bound that a couple of users' answers would undo is a bound, but a fragile one
        room = m - max(abs(tost["low"]), abs(tost["high"]))
        return (f"bounded: the difference {d:+.3f} {metric} lies within ±{m:.2f} ({p_text(tost['p'], 'TOST p')}, 90% "
                f"interval {tost['low']:+.3f} to {tost['high']:+.3f}) on {n} users; the interval's nearer end lies "
                f"{room:.3f} inside the margin, about {room * n:.1f} users' hits")
    detect = users_needed(tost["sd"], d) if d else None
    bound = users_needed_equivalence(tost["sd"], m)
    more = "".join([f"; about {detect} users would detect a difference of {d:+.3f} (power .8)" if detect else "",
                    f"; about {bound} would bound it within ±{m:.2f} if the true difference were 0" if bound else ""])
    holm = f", {p_text(difference['p_holm'], 'Holm p')}" if "p_holm" in difference else ""
    return (f"undecided: {d:+.3f} {metric} ({p_text(difference['p'])}{holm}; {p_text(tost['p'], 'TOST p')}, 90% interval "
            f"{tost['low']:+.3f} to {tost['high']:+.3f} is not within ±{m:.2f}) on {n} users{more}")


def user_values(ranks: pd.Series, metric: str) -> pd.Series:
    """Each user's ``metric`` from the positive's ranks (a Series indexed by user id), averaged over the user's rows
    where there are several (its SFT seeds): one value per user, the unit of every paired test here."""
    values = pd.Series(metrics.per_user(ranks.to_numpy(), metric), index=ranks.index)
    return values.groupby(level=0).mean()


def compare(ranks: pd.DataFrame, pairs: Sequence[tuple[str, str]], metric_names: Sequence[str] = METRICS,
            n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Paired comparison of systems ``a`` vs ``b`` for each pair and metric, Holm-corrected per metric.

    ``ranks``: one row per (system, user_id) with the positive's ``rank`` (as notebook 07 stores them). Users are
    matched by id; a pair whose systems ranked different users is an error, not a silent subset. With a ``seed``
    column (a fine-tuned row trained with several SFT seeds), each user's metric is averaged over the seeds first:
    the comparison is then of the expected metric over training runs, the users staying the unit of the test.
    """
    # A user's rows are its seeds (one row without a seed column): their metric is averaged per user below.
    by_system = {s: g.set_index("user_id")["rank"] for s, g in ranks.groupby("system", sort=False)}
    rows = []
    for a, b in pairs:
        for name in (a, b):
            if name not in by_system:
                raise KeyError(f"no ranks for system {name!r}; have {sorted(by_system)}")
        ra, rb = by_system[a], by_system[b]
        if set(ra.index) != set(rb.index):
            raise ValueError(f"{a} and {b} ranked different users: a paired test needs the same users")
        users = ra.index.unique()
        for metric in metric_names:
            va, vb = (user_values(r, metric).reindex(users).to_numpy() for r in (ra, rb))
            rows.append({"a": a, "b": b, "metric": metric, "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
                         **paired_difference(va, vb, n_resamples, seed)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = table.groupby("metric")["p"].transform(lambda p: holm(p))
    table["significant"] = table["p_holm"] < ALPHA
    return table


def best_row(table: pd.DataFrame, skip: Sequence[str] = (), metric: str = "recall@10") -> str | None:
    """The system with the highest ``metric`` (ties broken by MRR@10, then by table order) among those not in
    ``skip``: one rule for every "best ... row" a notebook names."""
    rows = table[~table["system"].isin(list(skip))]
    keys = [k for k in dict.fromkeys([metric, "mrr@10"]) if k in rows]
    return None if rows.empty else rows.sort_values(keys, ascending=False, kind="stable")["system"].iloc[0]


def evaluation_pairs(systems: Sequence[str], table: pd.DataFrame, metric: str = "recall@10") -> list[tuple[str, str]]:
    """The comparisons a reader of the paper asks about, among the systems present.

    Each LLM-TRSR variant against TALLRec, against zero-shot and against the best non-LLM row (by ``metric``, then
    MRR@10); hierarchical against recurrent.
    """
    present = set(systems)
    ours = [s for s in ("hierarchical", "recurrent") if s in present]
    best = best_row(table, [*LLM_ROWS, "random"], metric)
    pairs = [(s, other) for s in ours for other in ("tallrec", "zero_shot", best) if other in present]
    if {"hierarchical", "recurrent"} <= present:
        pairs.append(("hierarchical", "recurrent"))
    return list(dict.fromkeys(pairs))


def reading(table: pd.DataFrame, labels: dict[str, str] | None = None, metric: str = "recall@10",
            forest: bool = True) -> list[str]:
    """Plain sentences: which differences survive Holm's correction, and how wide the intervals are. ``forest``:
    the other metrics are drawn in a forest plot beside (the sentence says where to look)."""
    labels = labels or {}
    rows = table[table["metric"] == metric]
    if rows.empty:
        return [f"No comparison on {metric}."]
    name = lambda s: labels.get(s, s)  # noqa: E731
    lines = []
    for r in rows.itertuples():
        verdict = "a real difference" if r.significant else "not distinguishable after the correction"
        lines.append(f"{name(r.a)} - {name(r.b)}: {r.diff:+.3f} {metric} (95% interval {r.low:+.3f} to "
                     f"{r.high:+.3f}; {p_text(r.p)}, {p_text(r.p_holm, 'Holm')}): {verdict} on these {r.users} users.")
    n_sig = int(rows["significant"].sum())
    lines.append(f"{n_sig} of {len(rows)} comparisons on {metric} survive Holm's correction at the 5% level.")
    others = table[table["metric"] != metric]
    for m, group in others.groupby("metric", sort=False):
        sig = group[group["significant"]]
        where = "the forest plot's other panels, " if forest else ""
        lines.append(f"On {m} ({where}Holm within {m}): {len(sig)} of {len(group)} survive"
                     + (": " + "; ".join(f"{name(r.a)} - {name(r.b)} {r.diff:+.3f} ({p_text(r.p_holm, 'Holm p')})"
                                         for r in sig.itertuples()) if len(sig) else "") + ".")
    narrow = table[((table["low"] > 0) | (table["high"] < 0)) & (table["p"] >= 0.05)]
    if len(narrow):
        lines.append(f"{len(narrow)} of {len(table)} intervals exclude 0 while the sign-flip test's p is .05 or more "
                     "(e.g. " + ", ".join(f"{name(r.a)} - {name(r.b)} on {r.metric}" for r in narrow.head(2).itertuples())
                     + "): with few users whose differences take only a few values (Recall@10: -1, 0, +1) the "
                     "percentile bootstrap interval tends to be too narrow; the sign-flip test, which makes no such "
                     "approximation, is the one the decisions use.")
    return lines
