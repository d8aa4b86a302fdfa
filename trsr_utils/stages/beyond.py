"""Notebook 09: beyond one yes/no per candidate, on notebook 07's test users.

1. **Listwise vs pointwise** (:mod:`.listwise`): the same users' 21 candidates
   ranked by one listwise prompt (letters A-U, zero-shot and LoRA-fine-tuned
   through the same TRL + PEFT path) and by pointwise shared-prefix p(yes)
   (notebook 07's zero-shot and LLM-TRSR rows, re-used from the score store);
   quality, and candidates/s measured back to back on the same users.
2. **Position bias**: the listwise prompt in ``beyond.orders`` seeded candidate
   orders; how far the positive's rank moves with its place, and the
   order-averaged score (debiased). The fine-tuned pointwise row is scored in
   a second order too: one candidate per prompt leaves nothing to move.
3. **Intent localization** (:mod:`.retrieval`): the users' preference summaries
   embedded with MiniLM, the nearest catalogue items retrieved.
4. **Two-stage ranking over the whole catalogue**: the top ``beyond.retrieve``
   items of SASRec, of the summary retriever and of their union, re-ranked by
   the fine-tuned pointwise and listwise LLMs; full-catalogue Recall@10 and
   NDCG@10 for retrieval alone and with the LLM, and how often the positive
   was retrieved at all.

Every score set is stored in the run's score store (``cache/scores/``) under a
key of everything it depends on (as in notebook 07), so a re-run costs nothing
and a changed setting recomputes exactly what it touches. The listwise adapter
is trained into ``09_beyond/adapters/<key>/`` (checkpoints resume). The tables
go to ``09_beyond/<fingerprint>/``.

Command line (the listwise adapter, every order's scores and the re-rankings on one process or several: under
torchrun the users are shared out, the adapter trains with DDP and rank 0 writes; the notebook then re-uses it all)::

    python -m trsr_utils beyond --profile demo
    torchrun --nproc_per_node 8 -m trsr_utils beyond --profile paper-mind
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines
from trsr_utils.core import distributed, io
from trsr_utils.core.config import Config
from trsr_utils.data import preparation
from trsr_utils.method import listwise, llm, metrics, prompts, retrieval, score_store
from trsr_utils.method.score_store import cached, scores_path
from trsr_utils.method.user_prompts import main_summary
from trsr_utils.stages import evaluation, prepare, sft, summarize, table_rows
from trsr_utils.stages.listwise_scores import (FOLDER, POINTWISE, ensure_adapter, listwise_key, pointwise_frame,
                                               score_listwise, timing, users)
from trsr_utils.stages.summarize import summaries_for
from trsr_utils.stages.two_stage import item_vectors, rerank, retrieve, summary_retriever_key
from trsr_utils.store import stages
from trsr_utils.store.stages import Inputs


def _inputs(cfg: Config) -> Inputs:
    """09 reads the main summary and notebook 06's adapter for it."""
    return {"01_data": ("01_data", cfg), **sft.llm_inputs(cfg, cfg, main_summary(cfg), True)}


# Listwise vs pointwise on 07's test users (07's pointwise scores re-used from the score store), position bias, the
# summary retriever and two-stage ranking over the whole catalogue (SASRec retrains here).
STAGE = stages.register(stages.Stage(
    FOLDER, "09_beyond_pointwise", (prepare.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT, sft.STAGE),
    ("seed", "beyond", "eval.test_users", "eval.bootstrap", "eval.recbole_epochs", "eval.recbole_embedding_size",
     "eval.recbole_max_seq_length", "eval.recbole_learning_rate", "sft", "prompt", "text", "model.device",
     "model.scoring_dtype"),
    exclude=("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot"), models=("model.recommender",),
    code=prompts.code_parts("recommendation", "listwise"),
    inputs=_inputs))
RERANKERS = ("pointwise", "listwise")
RETRIEVERS = ("SASRec", "summary", "union")
LABELS = {"pointwise zero-shot": "Pointwise p(yes), zero-shot", "pointwise fine-tuned": "Pointwise p(yes), fine-tuned",
          "listwise zero-shot": "Listwise letters, zero-shot (one order)",
          "listwise zero-shot, order-averaged": "Listwise letters, zero-shot, order-averaged",
          "listwise fine-tuned": "Listwise letters, fine-tuned (one order)",
          "listwise fine-tuned, order-averaged": "Listwise letters, fine-tuned, order-averaged",
          "summary retriever": "Summary retriever (MiniLM cosine)"}


# ----------------------------------------------------------------- the stage, section by section
@dataclass
class Users:
    """What every section of notebook 09 reads, resolved once: the users and their candidates, the whole
    catalogue, the recommender's tokenizer and (loaded on first use) model."""

    cfg: Any
    prepared: Any
    samples: pd.DataFrame
    whole: Any  # ``prepared`` with every catalogue item (the retrievers return items no sample mentions)
    tokenizer: Any
    base: Callable[[], Any]
    log: Callable[[str], None]

    @property
    def ids(self) -> list[str]:
        return list(self.samples["user_id"])

    @property
    def n_candidates(self) -> int:
        return 1 + self.cfg.data.eval_negatives

    @property
    def candidates(self) -> list[list[str]]:
        return baselines.candidates(self.samples)


def resolve(cfg: Any, log: Callable[[str], None] = print) -> Users:
    """Notebook 07's test users (the first ``beyond.users``), the catalogue and the recommender, for every section."""
    prepared = prepare.read(cfg)
    samples = users(cfg, prepared)
    n_cand = 1 + cfg.data.eval_negatives
    if n_cand > len(listwise.LETTERS):
        raise ValueError(f"{n_cand} candidates per user: a listwise prompt labels at most {len(listwise.LETTERS)} "
                         "(A-Z); lower data.eval_negatives")
    return Users(cfg, prepared, samples, preparation.with_whole_catalogue(cfg, prepared),
                 llm.load_tokenizer(cfg.model.recommender), table_rows.recommender_loader(cfg), log)


def listwise_vs_pointwise(u: Users) -> tuple[dict[str, pd.DataFrame], dict[str, list[list[np.ndarray]]], Path,
                                              list[np.ndarray]]:
    """Section 1: notebook 07's pointwise rows and the listwise prompt, zero-shot and fine-tuned, on the same users
    and candidates: each row's scores (the listwise ones in ``beyond.orders`` candidate orders, and averaged over
    them), the listwise adapter and the orders."""
    cfg, b = u.cfg, u.cfg.beyond
    frames = {label: pointwise_frame(cfg, tuned, u.samples, u.prepared, u.tokenizer, u.base, u.log)
              for tuned, label in POINTWISE.items()}
    adapter = ensure_adapter(cfg, u.prepared, u.whole.catalog, u.tokenizer, u.log)
    perms = listwise.orders(u.ids, u.n_candidates, b.orders, cfg.seed)
    per_order: dict[str, list[list[np.ndarray]]] = {}
    for label, lw_adapter in (("listwise zero-shot", None), ("listwise fine-tuned", adapter)):
        per_order[label], seconds = [], 0.0
        for o in range(b.orders):
            key = listwise_key(cfg, lw_adapter, o)
            frame = cached(scores_path(cfg, key), u.samples,
                           lambda o=o, a=lw_adapter, label=label: score_listwise(
                               cfg, u.samples, u.whole.catalog, u.tokenizer, u.base, a, u.candidates, perms[o],
                               f"{label}, order {o}"),
                           u.log, key)
            per_order[label].append([np.asarray(s) for s in frame["scores"]])
            seconds += float(frame["seconds"].iloc[0])
            if o == 0:
                frames[label] = frame
        averaged = listwise.order_averaged(per_order[label])  # costs every order's pass
        frames[f"{label}, order-averaged"] = score_store.score_frame(u.samples, averaged, seconds)
    return frames, per_order, adapter, perms


def position_bias(u: Users, frames: dict[str, pd.DataFrame], per_order: dict[str, list[list[np.ndarray]]],
                  perms: list[np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Section 2: where the positive lands with its place in the list: each listwise row over its orders and the
    fine-tuned pointwise row scored in a second order (order 1 of the listwise orders); per-position ranks and the
    bias table."""
    order_1 = listwise.orders(u.ids, u.n_candidates, 2, u.cfg.seed)[1]
    second = pointwise_frame(u.cfg, True, u.samples, u.prepared, u.tokenizer, u.base, u.log, perms=order_1)
    pointwise_orders = [[np.asarray(s) for s in frames["pointwise fine-tuned"]["scores"]],
                        [np.asarray(s) for s in second["scores"]]]
    identity_order = [np.arange(u.n_candidates) for _ in u.ids]  # 07 scored the candidates positive first
    positions = pd.concat(
        [listwise.position_frame(label, u.ids, per_order[label], perms) for label in per_order]
        + [listwise.position_frame("pointwise fine-tuned", u.ids, pointwise_orders, [identity_order, order_1])],
        ignore_index=True)
    return positions, listwise.position_bias(positions, u.n_candidates)


def intent_localization(u: Users) -> tuple[pd.DataFrame, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """Section 3: the users' summaries embedded with MiniLM rank their sampled candidates by cosine (the summary
    retriever's row); also the embeddings (items, summaries), computed once and only if something is not stored."""
    cfg, catalogue = u.cfg, sorted(u.whole.catalog)

    @functools.cache
    def vectors() -> tuple[np.ndarray, np.ndarray]:
        summaries = summaries_for(cfg, main_summary(cfg))
        u.log(f"embedding {len(catalogue)} catalogue items and {len(u.samples)} summaries with MiniLM")
        return (item_vectors(cfg, u.whole.catalog, catalogue),
                retrieval.summary_vectors([summaries[i] for i in u.ids]))

    def sampled() -> list[np.ndarray]:
        item_vecs, summary_vecs = vectors()
        row_of = {i: r for r, i in enumerate(catalogue)}
        return [retrieval.cosine_scores(summary_vecs[n:n + 1], item_vecs[[row_of[i] for i in c]])[0]
                for n, c in enumerate(u.candidates)]

    key = summary_retriever_key(cfg)
    return cached(scores_path(cfg, key), u.samples, sampled, u.log, key), vectors


def two_stage_ranking(u: Users, listwise_adapter: Path,
                      vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[pd.DataFrame,
                                                                                      dict[str, pd.DataFrame]]:
    """Section 4: SASRec's, the summary retriever's and their union's top ``beyond.retrieve`` items over the whole
    catalogue, each alone and re-ranked by the fine-tuned pointwise and listwise LLMs: one row per pipeline, and
    every pipeline's lists ("retriever|re-ranker" -> per user the items, their scores and the positive's rank)."""
    cfg, b = u.cfg, u.cfg.beyond
    retrieved, retrieved_keys = retrieve(cfg, u.samples, u.whole, u.log, sorted(u.whole.catalog), vectors)
    pointwise_adapter = table_rows.ensure_adapter(cfg, main_summary(cfg), u.log)
    rows, stored = [], {}
    for r in RETRIEVERS:
        rows.append(_two_stage_row(r, "none", retrieved[r]["rank"], b.retrieve, cfg, retrieved[r]))
        stored[f"{r}|none"] = retrieved[r]
        for reranker in RERANKERS:
            f = rerank(cfg, retrieved[r], retrieved_keys[r], reranker, u.samples, u.whole.catalog, u.tokenizer,
                       u.base, pointwise_adapter if reranker == "pointwise" else listwise_adapter, u.log,
                       f"re-ranking {r}'s top {b.retrieve}")
            rows.append(_two_stage_row(r, reranker, f["rank"], b.retrieve, cfg, f))
            stored[f"{r}|{reranker}"] = f
    return pd.DataFrame(rows), stored


def run(cfg: Any, log: Callable[[str], None] = print, force: bool = False) -> dict[str, Any]:
    """Everything of notebook 09, section by section (each score set from the store when its key matches); writes
    the tables to ``09_beyond/<fingerprint>/`` and returns them (:func:`read`). A complete result for these
    settings is returned as it is (its speed measurement included) unless ``force``: then the tables are made
    again, from the store."""
    if stages.is_complete(cfg, STAGE) and not force:
        done = read(cfg)
        log(f"complete for these settings: the stored tables of {io.shown_path(done['folder'], cfg.run_dir)} re-used")
        return done
    u = resolve(cfg, log)
    frames, per_order, adapter, perms = listwise_vs_pointwise(u)
    positions, bias = position_bias(u, frames, per_order, perms)
    frames["summary retriever"], vectors = intent_localization(u)
    two, stored = two_stage_ranking(u, adapter, vectors)
    table = quality_table(frames, cfg)
    times = timing(cfg, u.samples, u.whole.catalog, u.tokenizer, u.base())
    table_rows.forget_trained()
    if not distributed.is_main():  # rank 0 writes the tables; the others wait for them below
        distributed.barrier()
        return read(cfg)
    out = stages.result_dir(cfg, STAGE, create=True)
    io.write_text(out / "listwise_vs_pointwise.csv", table.to_csv(index=False))
    io.write_text(out / "two_stage.csv", two.to_csv(index=False))
    io.write_parquet(out / "positions.parquet", positions)
    # every retrieved list and re-ranking: per user the items, their scores and the positive's rank
    io.write_parquet(out / "two_stage_lists.parquet", pd.concat(
        [f[["user_id", "items", "scores", "rank"]].assign(pipeline=name) for name, f in stored.items()],
        ignore_index=True))
    report = io.read_json(adapter.parent / "report.json")
    b = cfg.beyond
    record = {"n_users": len(u.samples), "n_candidates": u.n_candidates, "orders": b.orders, "retrieve": b.retrieve,
              "catalogue": len(sorted(u.whole.catalog)), "table": table.to_dict(orient="records"),
              "position_bias": bias.to_dict(orient="records"), "two_stage": two.to_dict(orient="records"),
              "timing": times, "listwise_adapter": {k: report[k] for k in ("examples", "global_step", "train_seconds",
                                                                          "train_loss", "tokens_per_example_mean")},
              "scores": {k: [list(map(float, s)) for s in f["scores"]] for k, f in frames.items()}}
    io.write_json(out / "results.json", record)
    stages.finish(cfg, STAGE)
    log(f"{len(table)} rows for {len(u.samples)} test users, {len(two)} two-stage rows; the tables in "
        f"{io.shown_path(out, cfg.run_dir)}")
    distributed.barrier()
    return read(cfg)


def _two_stage_row(retriever: str, reranker: str, ranks: Sequence[float], k: int, cfg: Any,
                   frame: pd.DataFrame | None = None) -> dict[str, Any]:
    m = retrieval.retrieved_metrics(ranks, k)
    hits = metrics.per_user(np.asarray(ranks, dtype=np.float64), "recall@10")
    low, high = evaluation.mean_interval(hits, cfg.eval.bootstrap, cfg.seed)
    return {"retriever": retriever, "reranker": reranker, **m, "recall@10_low": low, "recall@10_high": high,
            "users": len(hits), "seconds": float(frame["seconds"].iloc[0]) if frame is not None else None}


def quality_table(frames: dict[str, pd.DataFrame], cfg: Any) -> pd.DataFrame:
    """One row per system on the sampled candidates: Recall@3/5/10, MRR@10, NDCG@10, the 95% interval of
    Recall@10 over users."""
    rows = []
    for name, f in frames.items():
        m = metrics.metrics_from_ranks(f["rank"])
        low, high = evaluation.mean_interval(metrics.per_user(f["rank"], "recall@10"), cfg.eval.bootstrap, cfg.seed)
        rows.append({"system": name, "label": LABELS.get(name, name), **{c: m[c] for c in (
            "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10")}, "recall@10_low": low, "recall@10_high": high,
            "users": len(f)})
    return pd.DataFrame(rows)


def read(cfg: Any) -> dict[str, Any]:
    """Notebook 09's results for these settings: ``table``, ``bias``, ``two_stage``, ``timing`` (frames / dicts),
    ``positions`` (one row per system, user and order), ``lists`` ((retriever, re-ranker or "none") -> per user the
    retrieved items, their scores and the positive's rank), the raw ``record`` (with each system's ``scores``)."""
    folder = stages.require(cfg, STAGE)
    record = io.read_json(folder / "results.json")
    lists = io.read_parquet(folder / "two_stage_lists.parquet")
    return {"table": pd.DataFrame(record["table"]), "bias": pd.DataFrame(record["position_bias"]),
            "two_stage": pd.DataFrame(record["two_stage"]), "timing": record["timing"],
            "positions": io.read_parquet(folder / "positions.parquet"), "record": record, "folder": folder,
            "lists": {tuple(name.split("|")): g.drop(columns="pipeline").reset_index(drop=True)
                      for name, g in lists.groupby("pipeline", sort=False)}}


def reading(results: dict[str, Any]) -> list[str]:
    """What notebook 09's tables show, in sentences computed from them."""
    table, bias, two = results["table"].set_index("system"), results["bias"].set_index("system"), results["two_stage"]
    n = int(results["record"]["n_users"])
    out = [f"{n} test users: one user moves a Recall@K by {1 / n:.3f}. The pointwise rows are notebook 07's scores "
           f"of the same rows on these {n} users, so they can differ from 07's table, which averages over all its "
           "test users."]
    for kind in ("zero-shot", "fine-tuned"):
        p, lw, avg = (f"pointwise {kind}", f"listwise {kind}", f"listwise {kind}, order-averaged")
        if p in table.index and lw in table.index:
            first = bias.loc[lw, "top_is_first"] if lw in bias.index else None
            out.append(f"{kind.capitalize()}: listwise Recall@10 {table.loc[lw, 'recall@10']:.3f} (order-averaged "
                       f"{table.loc[avg, 'recall@10']:.3f}) against pointwise {table.loc[p, 'recall@10']:.3f}"
                       + (f"; but its top candidate is the one listed first in {first:.0%} of prompts, so its "
                          "Recall@10 measures where the positive was listed, not what the model knows."
                          if first is not None and first >= 0.9 else "."))
    t = {r["scoring"]: r for r in results["timing"]["rows"]}
    out.append(f"Speed, back to back on {t['listwise']['users']} users: listwise {t['listwise']['candidates_per_s']:.1f} "
               f"candidates/s, pointwise shared-prefix {t['pointwise']['candidates_per_s']:.1f} "
               f"({results['timing']['speedup_listwise']:.2f}x).")
    for system, r in bias.iterrows():
        moved = (f"{system}: over {int(r['orders'])} orders the positive's rank moves by {r['rank_range_mean']:.1f} "
                 f"places on average ({r['users_rank_moved']:.0%} of users' ranks move)")
        out.append(moved + (" (one candidate per prompt: no list to be biased by)." if system.startswith("pointwise")
                            else f"; the top candidate was the one shown first in {r['top_is_first']:.0%} of prompts "
                                 f"(unbiased: {r['uniform_top_share']:.0%})."))
    ranked = two.sort_values(["recall@10", "ndcg@10"], ascending=False, kind="stable")
    best, k = ranked.iloc[0], results["record"]["retrieve"]
    def name(r: Any) -> str:
        return f"{r['retriever']} + " + ("no re-ranker" if r["reranker"] == "none" else r["reranker"] + " LLM")

    tied = [name(r) for _, r in ranked.iloc[1:].iterrows() if r["recall@10"] == best["recall@10"]]
    if best["recall@10"] == 0 and best["ndcg@10"] == 0:  # nothing to call best: every pipeline at 0
        lead = (f"Over the whole catalogue none of the {len(two)} pipelines puts a user's positive in its top 10 "
                "(Recall@10 and NDCG@10 0.000 for each)")
    else:
        lead = (f"Over the whole catalogue the best pipeline is {name(best)} (Recall@10 {best['recall@10']:.3f}, "
                f"NDCG@10 {best['ndcg@10']:.3f}" + (f"; tied on Recall@10 with {', '.join(tied)}, ahead on NDCG@10 "
                                                    "or level" if tied else "") + ")")
    out.append(lead + f"; the retrievers find the positive in their top {k} for "
               + ", ".join(f"{r['retriever']} {r[f'retrieved@{k}']:.0%}"
                           for r in two[two["reranker"] == "none"].to_dict(orient="records"))
               + " of users: no re-ranker can do better than that.")
    found = two[two["reranker"] == "none"].set_index("retriever")[f"retrieved@{k}"]
    if "union" in found and found["union"] < found.drop("union").max():
        out.append(f"The union finds fewer than one of its parts: it takes the two lists in turn up to {k} items, so it "
                   f"keeps about the top {k // 2} of each, and a positive that a retriever places below that is lost.")
    if n < 100:
        out.append("With this few users the tables show the machinery, not a result: do not rank methods by them.")
    return out


# ----------------------------------------------------------------- command line
def command(cfg: Config, args: Any) -> int:
    """Notebook 09's results on one process or several (torchrun / accelerate launch): the listwise adapter, the
    listwise scores in every order, the re-rankings and the tables, rank 0 writing. Notebook 09 then reads them."""
    run(cfg, log=print if distributed.is_main() else (lambda _: None))
    return 0
