"""Does a summary describe its user? A label-free audit of preference summaries (notebooks 05 and 08).

LLM-TRSR rests on one claim: the summary of a long history carries what no longer fits in the prompt. Before
asking whether a recommender *uses* a summary, ask whether the summary *says* anything about its user. Every
measure here is computed from the user's own data, with no human labels:

* **faithfulness**: of the attributes a summary names (MovieLens genres, MIND categories, Amazon-M2 brands:
  :func:`trsr_utils.method.text.item_categories`), the share the history contains; the others are *invented*. Titles
  are checked the same way (a quoted or capitalised name in none of the history's lines is invented:
  :func:`trsr_utils.method.summary_checks.unknown_titles`).
* **coverage**: the share of the history's ``k`` dominant attributes (most frequent first) the summary names.
* **specificity**: the same two measures against *other* users' histories. A summary that names "action,
  comedy, drama" fits nearly everyone; one that describes its own user better than others is specific. Per
  method, a paired permutation test over users says whether own beats others
  (:func:`trsr_utils.method.significance.paired_difference`).
* **drift** (recurrent method): per update step, did the summary change, does it name the new block's dominant
  attributes, and what did it keep of the previous summary.
* **predictiveness**: the summary alone as a query. Its MiniLM embedding ranks the user's candidates by cosine,
  beside the same ranking from the recent items, the whole history, the template and another user's summary
  (paired, Holm): how much of the history a summary keeps.

Two controls of notebook 08 live here too: :func:`derangement` (each user gets another user's summary, never its
own) and the **oracle** summary (:func:`oracle_summaries`), a deliberately leaking positive control that names the
held-out positive's attributes. It is refused unless the caller names its control (``control=ORACLE``), and every
table that holds it labels it as a control, not a result.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from trsr_utils.method import metrics, prompts, significance
from trsr_utils.method.compare import jaccard, mentions
from trsr_utils.core.schema import RELIANCE_CONTROLS
from trsr_utils.method.summary_checks import unchanged, unknown_titles
from trsr_utils.method.text import category_counts, item_categories

TOP_K = 3  # the history's dominant attributes a summary should name (the template names its top 3 too)
ORACLE = "oracle (leaks the positive's attributes: a positive control, never a result)"
MEASURES = ("faithfulness", "coverage")
MAX_VOCABULARY = 2000  # attributes matched against every summary (MovieLens: 19 genres; MIND: ~18 categories)


# ----------------------------------------------------------------- attributes of a history, and of a summary
def history_attributes(item_ids: Sequence[str], catalog: Mapping[str, Mapping[str, str]]) -> Counter:
    """How often each attribute (genre, category, brand) occurs among the items."""
    return category_counts(item_ids, catalog)


def dominant(counts: Counter, k: int = TOP_K) -> list[str]:
    """The ``k`` most frequent attributes, ties broken by name (so the choice does not depend on item order)."""
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def vocabulary(catalog: Mapping[str, Mapping[str, str]], item_ids: Sequence[str] | None = None) -> list[str]:
    """The attributes a summary could name: those of ``item_ids`` (default: the whole catalogue), sorted."""
    ids = catalog.keys() if item_ids is None else item_ids
    return sorted({c for i in ids for c in item_categories(catalog.get(i, {}))})


def named_attributes(summary: str, attributes: Sequence[str]) -> set[str]:
    """The attributes of ``attributes`` the summary names (with the usual spellings: :func:`compare.mentions`)."""
    return {a for a in attributes if mentions(summary, a)}


def coverage(named: set[str], counts: Counter, k: int = TOP_K) -> float:
    """The share of the history's top-``k`` places the summary names (NaN for a history without attributes).

    Attributes counted more often than the k-th are matched one by one; the places left are filled by any named
    attribute *tied* with the k-th, so the measure does not depend on how ties happen to be ordered."""
    top = dominant(counts, k)
    if not top:
        return float("nan")
    threshold = counts[top[-1]]
    above = {a for a in top if counts[a] > threshold}
    tied = {a for a, n in counts.items() if n == threshold}
    return (len(named & above) + min(len(named & tied), len(top) - len(above))) / len(top)


def measures(named: set[str], counts: Counter, k: int = TOP_K) -> dict[str, float]:
    """Faithfulness and coverage of a summary that names ``named`` against a history with attribute ``counts``.

    faithfulness = |named ∩ history| / |named| (NaN when it names none); coverage: :func:`coverage`."""
    return {"faithfulness": len(named & set(counts)) / len(named) if named else float("nan"),
            "coverage": coverage(named, counts, k)}


# ----------------------------------------------------------------- the audit table
def audit(summaries: Mapping[str, Mapping[str, str]], histories: Mapping[str, Sequence[str]],
          catalog: Mapping[str, Mapping[str, str]], lines: Callable[[str], str], k: int = TOP_K,
          max_others: int = 200, seed: int = 0, fallbacks: Mapping[str, set[str]] | None = None) -> pd.DataFrame:
    """One row per (method, user): what the summary names, faithfulness and coverage against the user's own
    history and (mean) against every other audited user's history, and invented titles.

    ``summaries``: method -> {user: summary}; ``histories``: user -> item ids (oldest first); ``lines``: item id ->
    the item's text line (what the summarizer read: titles are looked up there). With more than ``max_others``
    other users, each summary is compared with a seeded sample of that many (the mean is then an estimate; the
    cost grows with users x sample instead of users squared). ``fallbacks``: method -> the users whose summary is
    the template fallback (a degenerate generation replaced), marked in the ``fallback`` column."""
    users = list(histories)
    rng = np.random.default_rng(seed)
    others_of = {u: [v for v in users if v != u] for u in users} if len(users) <= max_others + 1 else {
        u: [users[j] for j in rng.choice(len(users), max_others + 1, replace=False) if users[j] != u][:max_others]
        for u in users}
    if len(users) < 2:
        raise ValueError("the audit compares each user with the others: it needs at least 2 users")
    counts = {u: history_attributes(histories[u], catalog) for u in users}
    attrs = vocabulary(catalog)  # what the summary could name: a genre no audited user has is invented too
    if len(attrs) > MAX_VOCABULARY:  # e.g. every brand of a large catalogue: those of the audited histories
        attrs = vocabulary(catalog, [i for u in users for i in histories[u]])
    rows = []
    for method, texts in summaries.items():
        missing = [u for u in users if u not in texts]
        if missing:
            raise ValueError(f"{method}: {len(missing)} users have no summary (e.g. {missing[:3]})")
        for u in users:
            named = named_attributes(texts[u], attrs)
            own = measures(named, counts[u], k)
            others = [measures(named, counts[v], k) for v in others_of[u]]
            invented = named - set(counts[u])
            rows.append({"method": method, "user_id": u, "fallback": u in (fallbacks or {}).get(method, set()),
                         "named": len(named),
                         "invented": len(invented), "invented_names": ", ".join(sorted(invented)),
                         "top": ", ".join(dominant(counts[u], k)),
                         **own, **{f"{m}_others": float(np.nanmean([o[m] for o in others]))
                                   if any(not np.isnan(o[m]) for o in others) else float("nan") for m in MEASURES},
                         "invented_titles": len({n.lower() for n in unknown_titles(texts[u], [lines(i) for i in histories[u]])})})
    return pd.DataFrame(rows)


def specificity(table: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per method and measure: own vs other users' histories over the same users, their mean difference and a
    paired permutation p-value (users whose summary names nothing are left out of faithfulness)."""
    rows = []
    for method, sub in table.groupby("method", sort=False):
        for m in MEASURES:
            pair = sub[[m, f"{m}_others"]].dropna()
            row = {"method": method, "measure": m, "users": len(pair), "own": float(pair[m].mean()),
                   "others": float(pair[f"{m}_others"].mean())}
            if len(pair) >= 2:
                d = significance.paired_difference(pair[m], pair[f"{m}_others"], n_resamples, seed)
                row.update(diff=d["diff"], low=d["low"], high=d["high"], p=d["p"])
            else:
                row.update(diff=float("nan"), low=float("nan"), high=float("nan"), p=float("nan"))
            rows.append(row)
    out = pd.DataFrame(rows)
    out["specific"] = (out["p"] < significance.ALPHA) & (out["diff"] > 0)
    return out


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean faithfulness and coverage (own, others), attributes named and invented, invented titles."""
    return table.groupby("method", sort=False).agg(
        users=("user_id", "size"), named=("named", "mean"), invented=("invented", "mean"),
        faithfulness=("faithfulness", "mean"), faithfulness_others=("faithfulness_others", "mean"),
        coverage=("coverage", "mean"), coverage_others=("coverage_others", "mean"),
        names_nothing=("named", lambda n: float((n == 0).mean())), fallbacks=("fallback", "sum"),
        invented_titles=("invented_titles", "mean"))


# ----------------------------------------------------------------- recurrent drift
def drift(steps: pd.DataFrame, blocks: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]],
          k: int = 2) -> pd.DataFrame:
    """Each recurrent update (step >= 1): did it change the summary, the share of the new block's ``k`` top
    places it names (``new_block_coverage``: 0, 1/k, ..., 1) beside what the previous summary already named of them
    (``previous_coverage``: the fair baseline, since a stale summary names the usual genres anyway), does it name
    an attribute the new block brings that no earlier block had (``took_new``, NaN when the block brings none), and
    which share of the previous summary's named attributes it keeps (``kept``)."""
    attrs = vocabulary(catalog, [i for ids in blocks["item_ids"] for i in ids])
    items = {(r.user_id, r.block): list(r.item_ids) for r in blocks.itertuples(index=False)}
    rows = []
    for user, mine in steps.sort_values(["user_id", "level"]).groupby("user_id", sort=False):
        texts = mine["summary"].tolist()
        seen = history_attributes(items.get((user, 0), []), catalog)
        for step in range(1, len(texts)):
            block = history_attributes(items.get((user, step), []), catalog)
            new = set(block) - set(seen)
            now, before = named_attributes(texts[step], attrs), named_attributes(texts[step - 1], attrs)
            # as the "unchanged" check compares (summary_checks.unchanged), so 04, 05 and the flags agree
            rows.append({"user_id": user, "step": step, "unchanged": unchanged(texts[step], [texts[step - 1]]),
                         "overlap_with_previous": jaccard(texts[step], texts[step - 1]),
                         "new_block_coverage": coverage(now, block, k),
                         "previous_coverage": coverage(before, block, k),
                         "took_new": float(bool(now & new)) if new else float("nan"),
                         "kept": len(now & before) / len(before) if before else float("nan")})
            seen = seen + block
    return pd.DataFrame(rows, columns=["user_id", "step", "unchanged", "overlap_with_previous",
                                       "new_block_coverage", "previous_coverage", "took_new", "kept"])


def drift_by_step(table: pd.DataFrame) -> pd.DataFrame:
    """Per update step: how many updates, the share returned unchanged, and the means of the other measures."""
    return table.groupby("step").agg(updates=("user_id", "size"), unchanged=("unchanged", "mean"),
                                     overlap_with_previous=("overlap_with_previous", "mean"),
                                     new_block_coverage=("new_block_coverage", "mean"),
                                     previous_coverage=("previous_coverage", "mean"),
                                     brings_new=("took_new", "count"), took_new=("took_new", "mean"),
                                     kept=("kept", "mean"))


# ----------------------------------------------------------------- predictiveness: the summary as a query
def centroid(vectors: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of some L2-normalised vectors (a set of items as one query)."""
    v = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    norm = np.linalg.norm(v)
    return v / norm if norm else v


def query_ranks(queries: Mapping[str, Mapping[str, np.ndarray]], candidates: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The positive's rank (1 = best, ties against it) among each user's candidates (rows of ``candidates[user]``,
    the positive first), ranked by cosine to each query: one row per (query, user) as ``system``, ``user_id``,
    ``rank`` (what :func:`trsr_utils.method.significance.compare` reads)."""
    rows = []
    for name, by_user in queries.items():
        for user, cands in candidates.items():
            scores = np.asarray(cands, dtype=np.float64) @ np.asarray(by_user[user], dtype=np.float64)
            rows.append({"system": name, "user_id": user, "rank": metrics.positive_rank(scores)})
    return pd.DataFrame(rows)


def predictiveness(samples: pd.DataFrame, summaries: Mapping[str, Mapping[str, str]], lines: Callable[[str], str],
                   embed: Callable[[list[str]], np.ndarray], recent: int, main: str, seed: int) -> pd.DataFrame:
    """Each query's rank of the positive among every sample's candidates (the positive first, then its negatives),
    by MiniLM cosine: each summary method's text (``summaries``: name -> {user: text}), the centroid of the last
    ``recent`` items, the centroid of the whole history, and another user's ``main`` summary (a derangement: a
    query that knows nothing of the user). ``embed`` maps texts to L2-normalised rows."""
    users = list(samples["user_id"])
    items = sorted({i for s in samples.itertuples(index=False) for i in [*s.history, s.positive, *s.negatives]})
    vec = dict(zip(items, embed([lines(i) for i in items])))
    cands = {s.user_id: np.stack([vec[i] for i in [s.positive, *s.negatives]]) for s in samples.itertuples(index=False)}
    queries: dict[str, dict[str, np.ndarray]] = {}
    for name, texts in summaries.items():
        queries[f"{name} summary"] = dict(zip(users, embed([texts[u] for u in users])))
    hist = dict(zip(samples["user_id"], samples["history"]))
    if recent:
        queries[f"last {recent} items"] = {u: centroid([vec[i] for i in list(hist[u])[-recent:]]) for u in users}
    queries["whole history"] = {u: centroid([vec[i] for i in hist[u]]) for u in users}
    other = derangement(users, seed)
    queries[f"another user's {main} summary"] = {u: queries[f"{main} summary"][other[u]] for u in users}
    return query_ranks(queries, cands)


def kept_share(summary: float, history: float, floor: float) -> float:
    """How much of what the whole history knows the summary keeps: (summary - floor) / (history - floor), with
    ``floor`` what a query that knows nothing of the user reaches (another user's summary). NaN when the history
    itself is no better than the floor (nothing to keep)."""
    return (summary - floor) / (history - floor) if history > floor else float("nan")


# ----------------------------------------------------------------- controls: another user's summary, the oracle
def derangement(users: Sequence[str], seed: int) -> dict[str, str]:
    """user -> another user, a seeded permutation with no fixed point (Sattolo's algorithm: one random cycle
    through all users, so nobody is mapped to themselves)."""
    users = list(users)
    if len(users) < 2 or len(set(users)) != len(users):
        raise ValueError(f"a derangement needs at least 2 distinct users, got {len(users)}")
    rng = np.random.default_rng(seed)
    perm = list(range(len(users)))
    for i in range(len(perm) - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i, never i: the permutation stays one cycle
        perm[i], perm[j] = perm[j], perm[i]
    return {users[i]: users[perm[i]] for i in range(len(users))}


CONTROLS = RELIANCE_CONTROLS  # the summary replaced at inference (notebook 08's reliance cells)


def replaced(summaries: Mapping[str, str], users: Sequence[str], control: str, seed: int,
             template: Mapping[str, str] | None = None) -> dict[str, str]:
    """The summaries the recommender is shown under a reliance control: ``other_user`` (each user gets another
    user's summary, :func:`derangement`), ``empty`` (the summary section left empty), ``template`` (the no-LLM
    template summary of the user's own history)."""
    if control == "other_user":
        other = derangement(users, seed)
        return {u: summaries[other[u]] for u in users}
    if control == "empty":
        return {u: "" for u in users}
    if control == "template":
        if template is None:
            raise ValueError("the template control needs the template summaries")
        return {u: template[u] for u in users}
    raise ValueError(f"unknown reliance control {control!r}; known: {', '.join(CONTROLS)}")


class OracleRefused(PermissionError):
    """The oracle summary leaks the held-out answer: only its control cell may build it."""


def oracle_summaries(samples: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]], domain: str, *,
                     control: str = "") -> dict[str, str]:
    """user -> a summary naming the attributes of the user's *held-out positive*, worded like the template.

    A deliberately leaking positive control: if a model fine-tuned on it cannot use it, nothing a summary says
    can help. Refused unless ``control`` is :data:`ORACLE` (the caller says, in its own words, what it builds)."""
    if control != ORACLE:
        raise OracleRefused("the oracle summary names the held-out positive's attributes (it leaks the answer); it "
                            "is built only for the positive-control cell (pass control=audit.ORACLE)")
    items = prompts.DOMAINS[domain]["items"]
    out = {}
    for s in samples.itertuples(index=False):
        cats = item_categories(catalog.get(s.positive, {}))
        named = " and ".join(cats[:3]) if cats else "no listed category of"
        out[s.user_id] = f"{prompts.SUMMARY_OPENING} most often chose {named} {items}."
    return out


def drift_reading(table: pd.DataFrame, k: int = 2) -> list[str]:
    """What the recurrent updates did, in sentences computed from the per-update table."""
    if table.empty:
        return ["No recurrent updates (every history fits one block)."]
    by = drift_by_step(table)
    changed = table[~table["unchanged"]]
    took = table["took_new"].dropna()
    # Every step with its number of updates (later steps have fewer: only the users with that many blocks); past
    # eight steps the first, the highest and the last. One update per user (two blocks) has one step to name.
    shown = list(by.index) if len(by) <= 8 else list(dict.fromkeys([by.index[0], by["unchanged"].idxmax(),
                                                                     by.index[-1]]))
    steps = (f"each user's only update is step {by.index[0]}" if len(by) == 1 else
             ", ".join(f"step {s}: {by.loc[s, 'unchanged']:.0%} of {by.loc[s, 'updates']}" for s in shown)
             + ("" if len(shown) == len(by) else f"; {len(by)} steps in the table"))
    out = [f"{table['unchanged'].mean():.1%} of {len(table)} updates return the previous summary word for word "
           f"({steps})."]
    if len(changed):
        both, some = (changed["new_block_coverage"] == 1).mean(), (changed["new_block_coverage"] > 0).mean()
        out.append(f"Of the {len(changed)} updates that changed the summary, {both:.0%} name all of the new block's "
                   f"top {k} attributes and {some:.0%} at least one (mean share {changed['new_block_coverage'].mean():.0%}"
                   f", against {changed['previous_coverage'].mean():.0%} that the previous summary already named).")
        kept = changed["kept"].dropna()
        if len(kept):
            out.append(f"These changed updates keep {kept.mean():.0%} of the attributes the previous summary named (the "
                       "table's per-step 'kept' also counts the unchanged ones, which keep all).")
    if len(took):
        out.append(f"{int(took.sum())} of the {len(took)} updates whose block brings an attribute no earlier block had "
                   f"({took.mean():.0%}) name one.")
    return out


def reading(summary: pd.DataFrame, spec: pd.DataFrame, k: int = TOP_K) -> list[str]:
    """What the audit shows, in sentences computed from its tables."""
    out = []
    for method, row in summary.iterrows():
        cov = spec[(spec["method"] == method) & (spec["measure"] == "coverage")].iloc[0]
        verdict = ("describes its own user better than other users" if cov["specific"] else
                   "is not shown to describe its own user better than other users")
        p = "no test" if np.isnan(cov["p"]) else significance.p_text(cov["p"])
        fb = int(row.get("fallbacks", 0))
        out.append(f"{method}: names {row['named']:.1f} attributes per summary (of them {row['invented']:.2f} on "
                   f"average not in the history; {row['names_nothing']:.0%} of summaries name none); covers "
                   f"{row['coverage']:.0%} of its user's top {k} and {row['coverage_others']:.0%} of other users' "
                   f"({p}): it {verdict}" + (f" ({fb} of its {int(row['users'])} summaries {'is' if fb == 1 else 'are'} the template fallback)."
                                             if fb else "."))
    return out

