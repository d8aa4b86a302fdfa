"""Notebook 09's retrieval and two-stage ranking over the whole catalogue: SASRec's and the summary retriever's top
``beyond.retrieve`` items per user (and their union), re-ranked by the fine-tuned pointwise or listwise LLM."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils.baselines.embeddings import embed, identity
from trsr_utils.core import distributed, io
from trsr_utils.method import listwise, retrieval, score_store
from trsr_utils.method.score_store import scores_path
from trsr_utils.method.text import ItemTexter
from trsr_utils.method.user_prompts import build, main_summary
from trsr_utils.stages import protocols, table_rows
from trsr_utils.stages.listwise_scores import VERSION, listwise_adapter_id, llm_settings, samples_key, score_listwise
from trsr_utils.stages.summarize import summaries_for
from trsr_utils.store import stages


# ----------------------------------------------------------------- retrieval and two-stage ranking
EMBEDDINGS_DIR = Path("cache") / "embeddings"


def item_vectors(cfg: Any, catalog: Any, items: Sequence[str]) -> np.ndarray:
    """MiniLM embeddings of the items' text lines (uncapped, as the content baselines of notebook 07 embed them),
    one row per item; stored in ``cache/embeddings/`` under the model, the text settings and the items, so a
    notebook re-reading them does not embed the catalogue again."""
    key = {"model": identity(), "text": stages.settings(cfg, ["text"]), "items": stages.digest(list(items)),
           "data": stages.fingerprint(cfg, "01_data").digest}
    path = Path(cfg.run_dir) / EMBEDDINGS_DIR / f"{stages.digest(key)[:stages.DIGEST_CHARS]}.npy"
    if path.exists():
        return np.load(path)
    texter = ItemTexter.from_config(cfg, catalog)
    vectors = embed([texter(i) for i in items])
    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors)
    return vectors


def summary_retriever_key(cfg: Any) -> dict[str, Any]:
    """What the summary retriever's scores depend on: the users, their summaries, the embedding model, item text."""
    return {"system": "summary retriever", "version": VERSION, "samples": samples_key(cfg),
            "summary": table_rows.summary_id(cfg, main_summary(cfg)), "model": identity(),
            "text": stages.settings(cfg, ["text"])}


def retrieve(cfg: Any, samples: pd.DataFrame, whole: Any, log: Callable[[str], None], catalogue: list[str],
             vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Each retriever's top ``beyond.retrieve`` items per user over the whole catalogue with the positive's rank
    (stored under the retriever's key; the union is merged from the other two), and the digest of each
    retriever's key (what a re-ranking of its lists depends on)."""
    k = cfg.beyond.retrieve
    full = protocols.full_catalogue_samples(samples, catalogue)
    common = {"version": VERSION, "samples": samples_key(cfg), "k": k, "catalogue": stages.digest(catalogue)}
    out = {}

    def sasrec() -> pd.DataFrame:
        began = time.perf_counter()
        scores = table_rows.baseline_scores(cfg, "SASRec", whole, full)
        rows = [retrieval.top_k(s, [f.positive, *f.negatives], f.positive, set(), k)
                for s, f in zip(scores, full.itertuples(index=False))]
        return retrieval.frame(samples["user_id"], *zip(*rows), round(time.perf_counter() - began, 2))

    def summary() -> pd.DataFrame:
        item_vecs, summary_vecs = vectors()
        began = time.perf_counter()
        sims = retrieval.cosine_scores(summary_vecs, item_vecs)
        rows = [retrieval.top_k(sims[u], catalogue, s.positive, set(s.history), k)
                for u, s in enumerate(samples.itertuples(index=False))]
        return retrieval.frame(samples["user_id"], *zip(*rows), round(time.perf_counter() - began, 2))

    keys = {"SASRec": {**common, "retriever": table_rows.baseline_key(cfg, "SASRec")},
            "summary": {**common, "retriever": summary_retriever_key(cfg)}}
    for name, compute in (("SASRec", sasrec), ("summary", summary)):
        out[name] = _stored(cfg, keys[name], samples, compute, log, f"retrieving with {name}")
    merged = [retrieval.round_robin([a, b], k) for a, b in zip(out["SASRec"]["items"], out["summary"]["items"])]
    out["union"] = retrieval.frame(samples["user_id"], merged, [[0.0] * len(m) for m in merged],
                                   [retrieval.list_rank(m, p) for m, p in zip(merged, samples["positive"])], 0.0)
    digests = {n: stages.digest(keys[n]) for n in keys}
    return out, {**digests, "union": stages.digest([keys["SASRec"], keys["summary"]])}


def _stored(cfg: Any, key: dict[str, Any], samples: pd.DataFrame, compute: Callable[[], pd.DataFrame],
            log: Callable[[str], None], what: str, lists: Sequence[Sequence[str]] | None = None) -> pd.DataFrame:
    """A retrieval or re-ranking frame from the score store when it is for exactly these users (and lists);
    else computed (saying ``what``) and stored with its key beside it (:func:`score_store.stored_frame`)."""
    def same(frame: pd.DataFrame) -> bool:
        return list(frame["user_id"]) == list(samples["user_id"]) and (
            lists is None or [list(x) for x in frame["items"]] == [list(x) for x in lists])

    def made() -> pd.DataFrame:
        log(what)
        return compute()

    return score_store.stored_frame(scores_path(cfg, key), same, made, log, key)


def rerank(cfg: Any, retrieved: pd.DataFrame, retrieved_key: str, reranker: str, samples: pd.DataFrame,
           catalog: Any, tokenizer: Any, base: Callable[[], Any], adapter: Path, log: Callable[[str], None],
           desc: str) -> pd.DataFrame:
    """The retrieved lists (stored under the key with digest ``retrieved_key``) re-ranked by the fine-tuned
    ``reranker`` (pointwise p(yes) or listwise letters); the positive's rank within its list (``inf`` when it was
    not retrieved)."""
    lists = [list(x) for x in retrieved["items"]]
    shuffled = cfg.beyond.rerank_order == "shuffled"
    perms = [listwise.order_rng(cfg.seed, 50, u).permutation(len(x)) if shuffled else np.arange(len(x))
             for u, x in zip(samples["user_id"], lists)]
    adapter_id = (table_rows.adapter_id(cfg, main_summary(cfg), adapter) if reranker == "pointwise"
                  else listwise_adapter_id(adapter))
    key = {"system": f"rerank:{reranker}", "version": VERSION, "retrieved": retrieved_key,
           "method": main_summary(cfg), "summary": table_rows.summary_id(cfg, main_summary(cfg)), "adapter": adapter_id,
           **({"order": cfg.beyond.rerank_order, "seed": cfg.seed} if reranker == "listwise" else {}),
           **llm_settings(cfg)}

    def compute() -> pd.DataFrame:
        began = time.perf_counter()
        if reranker == "pointwise":
            prompts = build(cfg, samples, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, lists)
            scores = table_rows.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"{desc}: pointwise")
        else:
            scores = score_listwise(cfg, samples, catalog, tokenizer, base, adapter, lists, perms,
                                    f"{desc}: listwise")
        ranks = [retrieval.list_rank(x, p, s) for x, p, s in zip(lists, samples["positive"], scores)]
        return retrieval.frame(samples["user_id"], lists, scores, ranks, round(time.perf_counter() - began, 2))

    return _stored(cfg, key, samples, compute, log, f"{desc} with the {reranker} LLM ({len(samples)} users)", lists)
