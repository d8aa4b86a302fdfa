"""Notebook 07's checks of its own protocol: the official code's negatives (drawn from the whole catalogue) beside
ours, every non-LLM row ranking the whole catalogue, and the scores of a cheaper precision against the model's
own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils.core import io
from trsr_utils.core.config import with_overrides
from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.data import preparation, sampling
from trsr_utils.method import llm, metrics, significance
from trsr_utils.method.score_store import cached, llm_key, scores_path
from trsr_utils.method.user_prompts import build, main_summary
from trsr_utils.stages.table_rows import (adapter_id, baseline_key, baseline_scores, ensure_adapter, label,
                                    recommender_loader, score_prompts, summary_id, system_key)
from trsr_utils.stages.summarize import summaries_for
from trsr_utils.store import stages


# ----------------------------------------------------------------- the official code's negatives
UPSTREAM = "upstream negatives"


UPSTREAM_SUFFIX = "@upstream"


def upstream_samples(cfg: Any, samples: pd.DataFrame, catalogue: Sequence[str]) -> pd.DataFrame:
    """The same users and positives, each with the ``data.eval_negatives`` negatives the official LLM-TRSR code
    would draw: uniform over the whole ``catalogue``, nothing excluded (:func:`sampling.upstream_negatives` on the
    user's own seeded generator: what ``data.negative_source: upstream`` draws for that user)."""
    ids = np.array(sorted(set(catalogue)))
    out = samples.copy()
    out["negatives"] = [sampling.upstream_negatives(sampling.user_rng(cfg.seed, u), ids, cfg.data.eval_negatives)
                        for u in samples["user_id"]]
    return out


def main_row(cfg: Any, rows: Any) -> str | None:
    """The fine-tuned row among ``rows`` whose prompts carry the profile's own summary (:func:`main_summary`), if any:
    the row notebook 07's upstream check ranks again (and the plan prices)."""
    return next((r for r in rows if r != "zero_shot" and r in LLM_ROWS and LLM_ROWS[r] == main_summary(cfg)),
                None)


def upstream_check(cfg: Any, prepared: Any, samples: pd.DataFrame, frames: dict[str, pd.DataFrame],
                   log: Callable[[str], None] = print, base: Callable[[], Any] | None = None,
                   tokenizer: Any = None, whole: Any = None) -> dict[str, Any] | None:
    """What the official code's negatives change, on the same test users: how often they collide with the
    user's own items, and every non-LLM row and the main fine-tuned LLM row (the profile's ``sft.summary``) ranked
    again among them, paired against our candidates (sign-flip test, Holm). TF-IDF changes by more than the
    negatives: it fits its vocabulary and IDF on the items it ranks (now the whole catalogue). (Random scores by
    candidate position, so it cannot move.) None when the profile already draws them
    (``data.negative_source: upstream``), leaves the check out (``eval.upstream_check: false``) or nothing is to be
    ranked. ``base``/``tokenizer``: :func:`trsr_utils.stages.evaluation.run`'s, re-used; ``whole``: ``prepared``
    with every catalogue item (default: read from the raw files)."""
    if cfg.data.negative_source == "upstream" or not cfg.eval.upstream_check:
        return None
    main = main_row(cfg, frames)
    names = [n for n in frames if n not in LLM_ROWS] + ([main] if main else [])
    if not names:
        return None
    whole = whole if whole is not None else preparation.with_whole_catalogue(cfg, prepared)
    other = upstream_samples(cfg, samples, whole.catalog)
    upstream_frames = {}
    for name in names:
        adapter = ensure_adapter(cfg, LLM_ROWS[name], log) if name == main else None
        key = {**system_key(cfg, name, adapter), "protocol": UPSTREAM}

        def compute(name: str = name, adapter: Path | None = adapter) -> list[np.ndarray]:
            log(f"{label(name)}: ranking {len(other)} users among the upstream negatives")
            if name not in LLM_ROWS:
                return baseline_scores(cfg, name, whole, other)
            tok = tokenizer or llm.load_tokenizer(cfg.model.recommender)
            prompts = build(cfg, other, whole.catalog, summaries_for(cfg, LLM_ROWS[name]), tok)
            return score_prompts(cfg, prompts, (base or recommender_loader(cfg))(), tok, adapter,
                                 f"scoring {name} (upstream negatives)")

        upstream_frames[name] = cached(scores_path(cfg, key), other, compute, log, key)
    ranks = pd.concat([pd.DataFrame({"system": [n] * len(samples), "user_id": frames[n]["user_id"],
                                     "rank": frames[n]["rank"]}) for n in names]
                      + [pd.DataFrame({"system": [n + UPSTREAM_SUFFIX] * len(samples), "user_id": f["user_id"],
                                       "rank": f["rank"]}) for n, f in upstream_frames.items()], ignore_index=True)
    paired = significance.compare(ranks, [(n + UPSTREAM_SUFFIX, n) for n in names], seed=cfg.seed)
    return {"users": len(samples), "negatives": cfg.data.eval_negatives, "catalogue": len(whole.catalog),
            "systems": names, "llm_row": main, **sampling.collisions(other),
            "paired": paired.to_dict(orient="records"), "ranks": ranks}


# ----------------------------------------------------------------- full-catalogue protocol
FULL = "full-catalogue"


def precision_check(cfg: Any, prepared: Any, samples: pd.DataFrame, frames: dict[str, pd.DataFrame],
                    log: Callable[[str], None] = print, base: Callable[[], Any] | None = None,
                    tokenizer: Any = None) -> dict[str, Any] | None:
    """What ``model.scoring_dtype`` changed: the main LLM row (hierarchical, else the first LLM row) scored
    again in the model's own precision, same prompts and adapter; the share of users whose positive's rank moved,
    and by how much p(yes) moved. None when scoring already runs in the model's precision. ``base``/``tokenizer``:
    :func:`trsr_utils.stages.evaluation.run`'s recommender loader and tokenizer, re-used instead of loaded again."""
    dtype = cfg.model.scoring_dtype
    rows = [n for n in ("hierarchical", *frames) if n in LLM_ROWS and n in frames]
    if dtype in (None, cfg.model.dtype) or not rows:
        return None
    name, method = rows[0], LLM_ROWS[rows[0]]
    adapter = ensure_adapter(cfg, method, log) if name != "zero_shot" else None
    reference = with_overrides(cfg, {"model.scoring_dtype": None})
    key = llm_key(reference, method, summary_id(cfg, method), adapter_id(cfg, method, adapter) if adapter else None)
    m = cfg.model

    def compute() -> list[np.ndarray]:
        log(f"{label(name)}: scoring {len(samples)} users again in {m.dtype} (the reference for {dtype})")
        tok = tokenizer or llm.load_tokenizer(m.recommender)
        prompts = build(cfg, samples, prepared.catalog, summaries_for(cfg, method), tok)
        model = (base or recommender_loader(cfg))()
        return score_prompts(reference, prompts, model, tok, adapter, f"scoring {name} in {m.dtype}")

    full = cached(scores_path(cfg, key), samples, compute, log, key)
    cheap = frames[name]
    moved = full["rank"].to_numpy() != cheap["rank"].to_numpy()
    dp = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)) for a, b in zip(full["scores"], cheap["scores"])])
    return {"system": name, "dtype": dtype, "reference": m.dtype, "users": len(samples),
            "users_rank_changed": int(moved.sum()), "share_rank_changed": float(moved.mean()),
            "max_abs_p_difference": float(dp.max()), "mean_abs_p_difference": float(dp.mean()),
            "seconds": float(cheap["seconds"].iloc[0]), "reference_seconds": float(full["seconds"].iloc[0]),
            "recall@10": float(metrics.metrics_from_ranks(cheap["rank"])["recall@10"]),
            "reference_recall@10": float(metrics.metrics_from_ranks(full["rank"])["recall@10"])}


def full_catalogue_samples(samples: pd.DataFrame, items: Sequence[str]) -> pd.DataFrame:
    """The same users with every catalogue item as a candidate: the positive first, then every item that is
    neither the positive nor in the user's history (the usual full-ranking protocol), in catalogue order."""
    items = list(items)
    rows = []
    for s in samples.itertuples(index=False):
        seen = {*s.history, s.positive}
        rows.append({**s._asdict(), "negatives": [i for i in items if i not in seen]})
    return pd.DataFrame(rows, columns=samples.columns)


def full_catalogue(cfg: Any, prepared: Any, samples: pd.DataFrame, table: pd.DataFrame,
                   log: Callable[[str], None] = print, whole: Any = None) -> pd.DataFrame:
    """Recall@10 and NDCG@10 of every non-LLM system ranking the whole catalogue, beside its sampled values.

    Only the positive's rank per user is stored (under the system's key, the protocol and the catalogue): a
    catalogue's worth of scores per user would be most of the score store. The LLM rows are left out: one yes/no
    prompt per catalogue item and user is what sampled evaluation exists to avoid. ``whole``: ``prepared`` with
    every catalogue item (default: the raw catalogue, the pool the sampled negatives come from)."""
    whole = whole if whole is not None else preparation.with_whole_catalogue(cfg, prepared)
    catalogue = sorted(whole.catalog)
    full = full_catalogue_samples(samples, catalogue)
    rows = []
    for name in [n for n in table["system"] if n not in LLM_ROWS]:
        key = {**baseline_key(cfg, name), "protocol": FULL, "catalogue": stages.digest(catalogue)}
        path = scores_path(cfg, key)
        frame = io.read_parquet(path) if path.exists() else None
        if frame is None or list(frame["user_id"]) != list(full["user_id"]):
            log(f"{label(name)}: ranking the whole catalogue ({len(catalogue)} items)")
            began = time.perf_counter()
            ranks = [metrics.positive_rank(s) for s in baseline_scores(cfg, name, whole, full)]
            frame = pd.DataFrame({"user_id": full["user_id"], "rank": ranks,
                                  "candidates": 1 + full["negatives"].map(len),
                                  "seconds": round(time.perf_counter() - began, 2)})
            io.write_json(path.with_suffix(".json"), key)
            io.write_parquet(path, frame)
        m = metrics.metrics_from_ranks(frame["rank"])
        sampled = table.set_index("system").loc[name]
        rows.append({"system": name, "label": label(name), "sampled recall@10": sampled["recall@10"],
                     "full recall@10": m["recall@10"], "sampled ndcg@10": sampled["ndcg@10"],
                     "full ndcg@10": m["ndcg@10"], "full median rank": float(frame["rank"].median()),
                     "candidates (mean)": float(frame["candidates"].mean()),
                     "seconds": float(frame["seconds"].iloc[0])})
    return pd.DataFrame(rows)


def protocol_agreement(full: pd.DataFrame) -> dict[str, float]:
    """Kendall's tau between the systems' order under the sampled and the full-catalogue protocol, per metric
    (1: the same order; sampled metrics are known to reorder systems: Krichene & Rendle, KDD 2020)."""
    from scipy import stats

    out = {}
    for metric in ("recall@10", "ndcg@10"):
        tau = stats.kendalltau(full[f"sampled {metric}"], full[f"full {metric}"]).statistic if len(full) > 1 else None
        out[metric] = None if tau is None or np.isnan(tau) else float(tau)
    return out
