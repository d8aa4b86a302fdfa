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
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils.core import distributed, io
from trsr_utils.stages import evaluation
from trsr_utils.method import listwise, llm, metrics, retrieval
from trsr_utils.method import score_store
from trsr_utils.store import stages
from trsr_utils.baselines.embeddings import embed, identity
from trsr_utils.core.config import Config
from trsr_utils.data import preparation
from trsr_utils.stages import prepare, sft, summarize
from trsr_utils.store.stages import Inputs
from trsr_utils.method import prompts, text
from trsr_utils.stages.sft import load_adapter
from trsr_utils.method.score_store import cached, scores_path
from trsr_utils.core.progress import bar
from trsr_utils.method.prompts import answer_tokens
from trsr_utils.method.scoring import for_scoring
from trsr_utils.method.text import ItemTexter
from trsr_utils.method.user_prompts import build, main_summary
from trsr_utils.stages.summarize import summaries_for



def listwise_prompt(cfg: Config) -> Any:
    return prompts.placeholder_prompt("listwise", text.domain_of(cfg))


def _inputs(cfg: Config) -> Inputs:
    """09 reads the main summary and notebook 06's adapter for it."""
    return {"01_data": ("01_data", cfg), **sft.llm_inputs(cfg, cfg, main_summary(cfg), True)}


# Listwise vs pointwise on 07's test users (07's pointwise scores re-used from the score store), position bias, the
# summary retriever and two-stage ranking over the whole catalogue (SASRec retrains here).
STAGE = stages.register(stages.Stage(
    "09_beyond", "09_beyond_pointwise", (prepare.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT, sft.STAGE),
    ("seed", "beyond", "eval.test_users", "eval.bootstrap", "eval.recbole_epochs", "eval.recbole_embedding_size",
     "eval.recbole_max_seq_length", "eval.recbole_learning_rate", "sft", "prompt", "text", "model.device",
     "model.scoring_dtype"),
    exclude=("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot"), models=("model.recommender",),
    code={"recommendation prompt": sft.recommendation_prompt, "listwise prompt": listwise_prompt},
    inputs=_inputs))
VERSION = 1  # of the listwise and retrieval score keys
ADAPTER_VERSION = 1
POINTWISE = {False: "pointwise zero-shot", True: "pointwise fine-tuned"}  # notebook 07's rows for the main summary
RERANKERS = ("pointwise", "listwise")
RETRIEVERS = ("SASRec", "summary", "union")
LABELS = {"pointwise zero-shot": "Pointwise p(yes), zero-shot", "pointwise fine-tuned": "Pointwise p(yes), fine-tuned",
          "listwise zero-shot": "Listwise letters, zero-shot (one order)",
          "listwise zero-shot, order-averaged": "Listwise letters, zero-shot, order-averaged",
          "listwise fine-tuned": "Listwise letters, fine-tuned (one order)",
          "listwise fine-tuned, order-averaged": "Listwise letters, fine-tuned, order-averaged",
          "summary retriever": "Summary retriever (MiniLM cosine)"}


def users(cfg: Any, prepared: Any) -> pd.DataFrame:
    """Notebook 07's test users, the first ``beyond.users`` of them when set."""
    samples = evaluation.test_samples(cfg, prepared)
    return samples.head(cfg.beyond.users).reset_index(drop=True) if cfg.beyond.users else samples


def samples_key(cfg: Any) -> dict[str, Any]:
    key = score_store.samples_key(cfg)
    return {**key, "beyond.users": cfg.beyond.users} if cfg.beyond.users else key


def _llm_settings(cfg: Any) -> dict[str, Any]:
    m = cfg.model
    return {"settings": stages.settings(cfg, ["prompt", "text", "model.device", "model.scoring_dtype"]),
            "recommender": llm.model_id(m.recommender, m.dtype, m.quantization),
            "listwise prompt": stages.digest(stages.CODE["listwise prompt"](cfg))}


# ----------------------------------------------------------------- the listwise adapter
def adapter_key(cfg: Any) -> dict[str, Any]:
    """Everything the listwise adapter depends on: the training users and their candidates, the summaries, the
    sft section's training settings, the prompt, the model, the training orders."""
    # What listwise training does not read: the pointwise-only settings (loss, shared prefix, validation) and
    # the scoring precision.
    skip = ("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot", "sft.valid_users",
            "sft.summary", "sft.shared_prefix", "sft.loss")
    m = cfg.model
    return {"listwise adapter": ADAPTER_VERSION, "01_data": stages.fingerprint(cfg, "01_data").digest,
            "summary": evaluation.summary_id(cfg, main_summary(cfg)), "seed": cfg.seed,
            "sft": stages.settings(cfg, ["sft"], skip), "train_users": cfg.beyond.train_users,
            "train_orders": cfg.beyond.train_orders,
            "settings": stages.settings(cfg, ["prompt", "text", "model.device"]),
            "recommender": llm.model_id(m.recommender, m.dtype, m.quantization),
            "listwise prompt": stages.digest(stages.CODE["listwise prompt"](cfg))}


def adapter_dir(cfg: Any) -> Path:
    return Path(cfg.run_dir) / STAGE.name / "adapters" / stages.digest(adapter_key(cfg))[:stages.DIGEST_CHARS]


def training_set(cfg: Any, prepared: Any, catalog: Any, tokenizer: Any) -> tuple[list[Any], list[int]]:
    """The listwise training prompts (the first ``beyond.train_users`` training users, or all, each in
    ``beyond.train_orders`` seeded orders) and the position of the positive in each (its letter: the answer)."""
    train = prepared.samples[prepared.samples["split"] == "train"].reset_index(drop=True)
    if cfg.beyond.train_users:
        train = train.head(cfg.beyond.train_users)
    if train.empty:
        raise ValueError("no training users: data.n_train must be > 0 to fine-tune the listwise recommender")
    cands = listwise.training_candidates(cfg, train, list(catalog))
    # Orders 100, 101, ...: never one of the evaluation orders (0 .. beyond.orders - 1) of any user.
    perms = [[listwise.order_rng(cfg.seed, 100 + t, u).permutation(len(c)) for u, c in zip(train["user_id"], cands)]
             for t in range(cfg.beyond.train_orders)]
    repeated = pd.concat([train] * cfg.beyond.train_orders, ignore_index=True)
    lists = [[c[j] for j in perm] for p in perms for c, perm in zip(cands, p)]
    answers = [int(np.flatnonzero(perm == 0)[0]) for p in perms for perm in p]
    prompts = listwise.build(cfg, repeated, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, lists)
    return prompts, answers


def ensure_adapter(cfg: Any, prepared: Any, catalog: Any, tokenizer: Any,
                   log: Callable[[str], None] = print) -> Path:
    """The listwise LoRA adapter for ``cfg``'s settings, trained unless a finished one has exactly them."""
    out = adapter_dir(cfg)
    if (out / "report.json").exists() and (out / "adapter" / "adapter_config.json").exists():
        return out / "adapter"
    prompts, answers = training_set(cfg, prepared, catalog, tokenizer)
    letters = listwise.letters_for(tokenizer, prompts)
    examples = listwise.training_examples(prompts, answers, letters)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        io.write_json(out / "key.json", adapter_key(cfg))
    distributed.barrier()
    log(f"fine-tuning the listwise recommender: {len(examples)} prompts of {np.mean([len(e['input_ids']) for e in examples]):.0f}"
        f" tokens on average, the positive's letter the only label ({out})")
    m = cfg.model
    base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    listwise.train(cfg, base, tokenizer, examples, out, log)
    del base
    llm.release()
    return out / "adapter"


def listwise_adapter_id(adapter: Path) -> dict[str, str]:
    return {"listwise adapter": stages.file_digest(adapter / "adapter_model.safetensors")}


# ----------------------------------------------------------------- scoring the sampled candidates
def listwise_key(cfg: Any, adapter: Path | None, order: int) -> dict[str, Any]:
    return {"system": "listwise", "version": VERSION, "samples": samples_key(cfg), "method": main_summary(cfg),
            "summary": evaluation.summary_id(cfg, main_summary(cfg)), "seed": cfg.seed, "order": order,
            "adapter": listwise_adapter_id(adapter) if adapter else None, **_llm_settings(cfg)}


def _scoring_model(cfg: Any, base: Any, adapter: Path | None) -> Any:
    model = base if adapter is None else load_adapter(cfg, adapter, base)
    return model, for_scoring(model, cfg.model.scoring_dtype)


def _release(model: Any, base: Any) -> None:
    if model is not base:
        model.unload()  # the base model without the LoRA layers, for the next system


def score_listwise(cfg: Any, samples: pd.DataFrame, catalog: Any, tokenizer: Any, base: Callable[[], Any],
                   adapter: Path | None, candidate_lists: Sequence[Sequence[str]], perms: Sequence[np.ndarray],
                   desc: str) -> list[np.ndarray]:
    """Log-probabilities of each user's ``candidate_lists`` items (in that order) from one listwise prompt per user
    listing them in ``perms[u]`` order: ``base`` alone (zero-shot) or with the listwise ``adapter``."""
    shown = [[c[j] for j in perm] for c, perm in zip(candidate_lists, perms)]
    prompts = listwise.build(cfg, samples, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, shown)
    model, scorer = _scoring_model(cfg, base(), adapter)
    try:
        with bar(len(prompts), desc, "user") as progress:
            by_letter = listwise.letter_logprobs(scorer, prompts, listwise.letters_for(tokenizer, prompts),
                                                 cfg.sft.score_batch_users, tokenizer.pad_token_id or 0, progress)
    finally:
        _release(model, base())
    return [listwise.to_candidates(s, perm) for s, perm in zip(by_letter, perms)]


def pointwise_frame(cfg: Any, finetuned: bool, samples: pd.DataFrame, prepared: Any, tokenizer: Any,
                    base: Callable[[], Any], log: Callable[[str], None],
                    perms: Sequence[np.ndarray] | None = None) -> pd.DataFrame:
    """Pointwise p(yes) with the main summary, zero-shot or with notebook 06's adapter: with the hierarchical
    summary, notebook 07's zero-shot or LLM-TRSR row (the same key: its stored scores, the first users of 07's
    frame when ``beyond.users`` takes fewer), else scored here. ``perms``: the candidates' suffixes scored in this order instead (stored under a
    key with the order; the scores come back in candidate order)."""
    method = main_summary(cfg)
    adapter = evaluation.ensure_adapter(cfg, method, log) if finetuned else None
    key07 = score_store.llm_key(cfg, method, evaluation.summary_id(cfg, method),
                                evaluation.adapter_id(cfg, method, adapter) if adapter else None)
    if perms is None:
        path = scores_path(cfg, key07)
        if path.exists():
            stored = io.read_parquet(path).head(len(samples)).reset_index(drop=True)
            if (list(stored["user_id"]) == list(samples["user_id"])
                    and [list(c) for c in stored["candidates"]] == evaluation.baselines.candidates(samples)):
                return stored
    key = {**key07, "samples": samples_key(cfg), **({"order": stages.digest([p.tolist() for p in perms])}
                                                    if perms is not None else {})}

    def compute() -> list[np.ndarray]:
        cands = evaluation.baselines.candidates(samples)
        lists = [[c[j] for j in perm] for c, perm in zip(cands, perms)] if perms is not None else None
        label = POINTWISE[finetuned]
        log(f"{label}: scoring {len(samples)} users" + (" in another order" if perms is not None else ""))
        prompts = build(cfg, samples, prepared.catalog, summaries_for(cfg, method), tokenizer, lists)
        scores = evaluation.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"scoring {label}")
        return [listwise.to_candidates(s, perm) for s, perm in zip(scores, perms)] if perms is not None else scores

    return cached(scores_path(cfg, key), samples, compute, log, key)


def timing(cfg: Any, samples: pd.DataFrame, catalog: Any, tokenizer: Any, base: Any) -> dict[str, Any]:
    """Candidates/s of pointwise shared-prefix scoring and of listwise scoring (zero-shot, the scoring precision),
    on the same first ``beyond.timing_users`` users back to back (:func:`listwise.compare_speed`)."""
    sub = samples.head(cfg.beyond.timing_users)
    summaries = summaries_for(cfg, main_summary(cfg))
    point = build(cfg, sub, catalog, summaries, tokenizer)
    lists = listwise.build(cfg, sub, catalog, summaries, tokenizer, evaluation.baselines.candidates(sub))
    measured = listwise.compare_speed(for_scoring(base, cfg.model.scoring_dtype), point, lists,
                                      answer_tokens(tokenizer, point[0].suffixes[0]),
                                      listwise.letters_for(tokenizer, lists), cfg.sft.score_batch_users,
                                      tokenizer.pad_token_id or 0)
    n_cand = sum(len(p.suffix_ids) for p in point)
    rows = [{"scoring": k, "users": len(sub), "candidates": n_cand, "seconds": round(m["seconds"], 3),
             "candidates_per_s": round(n_cand / m["seconds"], 2), "tokens_per_user": round(m["tokens_per_user"], 1),
             "forward_passes_per_user": "1 (every candidate)" if k == "listwise"
             else f"1 prefix + {n_cand // len(sub)} candidate suffixes"} for k, m in measured.items()]
    return {"rows": rows, "speedup_listwise": round(measured["pointwise"]["seconds"] / measured["listwise"]["seconds"], 2),
            "dtype": cfg.model.scoring_dtype or cfg.model.dtype}


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
            "summary": evaluation.summary_id(cfg, main_summary(cfg)), "model": identity(),
            "text": stages.settings(cfg, ["text"])}


def retrieve(cfg: Any, samples: pd.DataFrame, whole: Any, log: Callable[[str], None], catalogue: list[str],
             vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Each retriever's top ``beyond.retrieve`` items per user over the whole catalogue with the positive's rank
    (stored under the retriever's key; the union is merged from the other two), and the digest of each
    retriever's key (what a re-ranking of its lists depends on)."""
    k = cfg.beyond.retrieve
    full = evaluation.full_catalogue_samples(samples, catalogue)
    common = {"version": VERSION, "samples": samples_key(cfg), "k": k, "catalogue": stages.digest(catalogue)}
    out = {}

    def sasrec() -> pd.DataFrame:
        began = time.perf_counter()
        scores = evaluation.baseline_scores(cfg, "SASRec", whole, full)
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

    keys = {"SASRec": {**common, "retriever": evaluation.baseline_key(cfg, "SASRec")},
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
    adapter_id = (evaluation.adapter_id(cfg, main_summary(cfg), adapter) if reranker == "pointwise"
                  else listwise_adapter_id(adapter))
    key = {"system": f"rerank:{reranker}", "version": VERSION, "retrieved": retrieved_key,
           "method": main_summary(cfg), "summary": evaluation.summary_id(cfg, main_summary(cfg)), "adapter": adapter_id,
           **({"order": cfg.beyond.rerank_order, "seed": cfg.seed} if reranker == "listwise" else {}),
           **_llm_settings(cfg)}

    def compute() -> pd.DataFrame:
        began = time.perf_counter()
        if reranker == "pointwise":
            prompts = build(cfg, samples, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, lists)
            scores = evaluation.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"{desc}: pointwise")
        else:
            scores = score_listwise(cfg, samples, catalog, tokenizer, base, adapter, lists, perms,
                                    f"{desc}: listwise")
        ranks = [retrieval.list_rank(x, p, s) for x, p, s in zip(lists, samples["positive"], scores)]
        return retrieval.frame(samples["user_id"], lists, scores, ranks, round(time.perf_counter() - began, 2))

    return _stored(cfg, key, samples, compute, log, f"{desc} with the {reranker} LLM ({len(samples)} users)", lists)


# ----------------------------------------------------------------- the stage
def run(cfg: Any, log: Callable[[str], None] = print, force: bool = False) -> dict[str, Any]:
    """Everything of notebook 09 (each score set from the store when its key matches); writes the tables to
    ``09_beyond/<fingerprint>/`` and returns them (:func:`read`). A complete result for these settings is returned
    as it is (its speed measurement included) unless ``force``: then the tables are made again, from the store."""
    if stages.is_complete(cfg, STAGE) and not force:
        done = read(cfg)
        log(f"complete for these settings: the stored tables of {io.shown_path(done['folder'], cfg.run_dir)} re-used")
        return done
    prepared = prepare.read(cfg)
    samples = users(cfg, prepared)
    n_cand = 1 + cfg.data.eval_negatives
    if n_cand > len(listwise.LETTERS):
        raise ValueError(f"{n_cand} candidates per user: a listwise prompt labels at most {len(listwise.LETTERS)} "
                         "(A-Z); lower data.eval_negatives")
    whole = preparation.with_whole_catalogue(cfg, prepared)
    catalog = whole.catalog  # every item (the retrievers return items no sample mentions)
    tokenizer = llm.load_tokenizer(cfg.model.recommender)
    base = evaluation.recommender_loader(cfg)
    ids = list(samples["user_id"])
    b = cfg.beyond

    # 1. pointwise (07's rows) and listwise, zero-shot and fine-tuned, on the same users and candidates
    frames = {label: pointwise_frame(cfg, tuned, samples, prepared, tokenizer, base, log)
              for tuned, label in POINTWISE.items()}
    adapter = ensure_adapter(cfg, prepared, catalog, tokenizer, log)
    perms = listwise.orders(ids, n_cand, b.orders, cfg.seed)
    candidates = evaluation.baselines.candidates(samples)
    per_order: dict[str, list[list[np.ndarray]]] = {}
    for label, lw_adapter in (("listwise zero-shot", None), ("listwise fine-tuned", adapter)):
        per_order[label], seconds = [], 0.0
        for o in range(b.orders):
            key = listwise_key(cfg, lw_adapter, o)
            frame = cached(scores_path(cfg, key), samples,
                           lambda o=o, a=lw_adapter, label=label: score_listwise(
                               cfg, samples, catalog, tokenizer, base, a, candidates, perms[o], f"{label}, order {o}"),
                           log, key)
            per_order[label].append([np.asarray(s) for s in frame["scores"]])
            seconds += float(frame["seconds"].iloc[0])
            if o == 0:
                frames[label] = frame
        averaged = listwise.order_averaged(per_order[label])  # costs every order's pass
        frames[f"{label}, order-averaged"] = score_store.score_frame(samples, averaged, seconds)

    # 2. position bias: the fine-tuned pointwise row in a second order (order 1 of the listwise orders)
    order_1 = listwise.orders(ids, n_cand, 2, cfg.seed)[1]
    second = pointwise_frame(cfg, True, samples, prepared, tokenizer, base, log, perms=order_1)
    pointwise_orders = [[np.asarray(s) for s in frames["pointwise fine-tuned"]["scores"]],
                        [np.asarray(s) for s in second["scores"]]]
    identity_order = [np.arange(n_cand) for _ in ids]  # 07 scored the candidates positive first
    positions = pd.concat(
        [listwise.position_frame(label, ids, per_order[label], perms) for label in per_order]
        + [listwise.position_frame("pointwise fine-tuned", ids, pointwise_orders, [identity_order, order_1])],
        ignore_index=True)
    bias = listwise.position_bias(positions, n_cand)

    # 3. intent localization: the summary retriever, on the sampled candidates and over the whole catalogue
    catalogue = sorted(catalog)

    @functools.cache
    def vectors() -> tuple[np.ndarray, np.ndarray]:  # (items, summaries) by MiniLM, only if something is not stored
        summaries = summaries_for(cfg, main_summary(cfg))
        log(f"embedding {len(catalogue)} catalogue items and {len(samples)} summaries with MiniLM")
        return item_vectors(cfg, catalog, catalogue), retrieval.summary_vectors([summaries[u] for u in ids])

    def sampled() -> list[np.ndarray]:
        item_vecs, summary_vecs = vectors()
        row_of = {i: r for r, i in enumerate(catalogue)}
        return [retrieval.cosine_scores(summary_vecs[u:u + 1], item_vecs[[row_of[i] for i in c]])[0]
                for u, c in enumerate(candidates)]

    key = summary_retriever_key(cfg)
    frames["summary retriever"] = cached(scores_path(cfg, key), samples, sampled, log, key)

    # 4. two-stage ranking over the whole catalogue
    retrieved, retrieved_keys = retrieve(cfg, samples, whole, log, catalogue, vectors)
    pointwise_adapter = evaluation.ensure_adapter(cfg, main_summary(cfg), log)
    two_stage, stored = [], {}
    for r in RETRIEVERS:
        two_stage.append(_two_stage_row(r, "none", retrieved[r]["rank"], b.retrieve, cfg, retrieved[r]))
        stored[f"{r}|none"] = retrieved[r]
        for reranker in RERANKERS:
            f = rerank(cfg, retrieved[r], retrieved_keys[r], reranker, samples, catalog, tokenizer, base,
                       pointwise_adapter if reranker == "pointwise" else adapter, log, f"re-ranking {r}'s top {b.retrieve}")
            two_stage.append(_two_stage_row(r, reranker, f["rank"], b.retrieve, cfg, f))
            stored[f"{r}|{reranker}"] = f

    table = quality_table(frames, cfg)
    times = timing(cfg, samples, catalog, tokenizer, base())
    evaluation._TRAINED.clear()
    two = pd.DataFrame(two_stage)
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
    record = {"n_users": len(samples), "n_candidates": n_cand, "orders": b.orders, "retrieve": b.retrieve,
              "catalogue": len(catalogue), "table": table.to_dict(orient="records"),
              "position_bias": bias.to_dict(orient="records"), "two_stage": two.to_dict(orient="records"),
              "timing": times, "listwise_adapter": {k: report[k] for k in ("examples", "global_step", "train_seconds",
                                                                          "train_loss", "tokens_per_example_mean")},
              "scores": {k: [list(map(float, s)) for s in f["scores"]] for k, f in frames.items()}}
    io.write_json(out / "results.json", record)
    stages.finish(cfg, STAGE)
    log(f"{len(table)} rows for {len(samples)} test users, {len(two)} two-stage rows; the tables in "
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
    out.append(f"Over the whole catalogue the best pipeline is {name(best)} (Recall@10 {best['recall@10']:.3f}, "
               f"NDCG@10 {best['ndcg@10']:.3f}" + (f"; tied on Recall@10 with {', '.join(tied)}, ahead on NDCG@10 or "
                                                   "level" if tied else "")
               + f"); the retrievers find the positive in their top {k} for "
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
