"""Notebook 07: every system ranks the same 21 candidates of every test user.

A *system* is a baseline (:mod:`trsr_utils.baselines`) or an LLM row:

* ``zero_shot``: the frozen recommender with the hierarchical summary (no fine-tuning)
* ``tallrec``: fine-tuned without a summary (recent items only), TALLRec-style
* ``hierarchical`` / ``recurrent``: LLM-TRSR, fine-tuned with that summary

Fine-tuned rows use the adapter of notebook 06 for their settings (``sft``
with ``sft.summary`` set to the row's summary), training any that is missing
with notebook 06's settings into its own ``06_sft/<fingerprint>/`` folder.

Each system's scores are stored as soon as they exist (one row per user:
candidates, scores, the positive's rank) in ``cache/scores/<key>.parquet``,
where the key is a hash of everything the scores depend on: the test users
and candidates (the data stage's fingerprint), the system and its settings
(``eval.recbole_epochs`` for a RecBole model, the prompt, summary and
adapter weights for an LLM row, ...). Scores are re-used only for an equal
key, so an interrupted evaluation resumes at the next system, a changed
setting recomputes exactly the systems it touches, and notebook 08 finds the
rows it shares with this table. The table itself goes to
``07_eval/<fingerprint>/``. It carries a bootstrap confidence interval over
test users, because on a few dozen users a difference of 0.1 in Recall@10 is
often noise.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines
from trsr_utils.store import stages
from trsr_utils.core import distributed, io
from trsr_utils.core.config import LLM_ROWS, Config, with_overrides
from trsr_utils.method import llm, metrics, significance
from trsr_utils.baselines import embeddings, recbole_models
from trsr_utils.data import sampling
from trsr_utils.core.progress import bar
from trsr_utils.method.prompts import answer_tokens
from trsr_utils.method.score_store import SCORE_VERSION, cached, llm_key, samples_key, scores_path
from trsr_utils.method.scoring import for_scoring, score_users
from trsr_utils.data import preparation
from trsr_utils.stages import prepare, sft
from trsr_utils.stages import summarize
from trsr_utils.store.stages import Inputs
from trsr_utils.stages.sft import load_adapter
from trsr_utils.method.text import ItemTexter
from trsr_utils.method.user_prompts import build, main_summary
from trsr_utils.stages.summarize import summaries_for



def _inputs(cfg: Config) -> Inputs:
    """07 reads an adapter per fine-tuned row (06 under that row's summary) and each row's summary stage."""
    out = {"01_data": ("01_data", cfg)}
    for system in cfg.eval.llm:
        out.update(sft.llm_inputs(cfg, cfg, LLM_ROWS[system], system != "zero_shot"))
    return out


STAGE = stages.register(stages.Stage(
    "07_eval", "07_evaluation", (prepare.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT, sft.STAGE),
    ("seed", "eval", "prompt", "text", "model.device", "model.scoring_dtype"),
    exclude=("eval.ablation_recent_items", "eval.ablation_items_per_block", "eval.ablation_summarizers",
             "eval.ablation_finetuned", "eval.reliance_controls", "eval.positive_controls", "eval.order_test",
             "eval.equivalence_margin", "eval.protocol"),  # the protocol acts through the data/text/sft fields
    models=("model.recommender",), code={"recommendation prompt": sft.recommendation_prompt}, inputs=_inputs,
    version=3))  # 2: BOS where the tokenizer adds one; the float64 p(yes); 3: the upstream negatives beside
LABELS = {
    "random": "Random", "popularity": "Popularity", "item_cf": "Item-CF", "tfidf": "Content: TF-IDF",
    "embedding": "Content: MiniLM embeddings", "NeuMF": "NCF (NeuMF)", "zero_shot": "LLM zero-shot",
    "tallrec": "TALLRec (no summary)", "hierarchical": "LLM-TRSR hierarchical",
    "recurrent": "LLM-TRSR recurrent",
}
COLUMNS = ["recall@3", "recall@5", "recall@10", "mrr@3", "mrr@5", "mrr@10"]

# Table 2 of the paper (Recall@3/5/10, MRR@3/5/10), measured on Amazon-M2 and MIND with Llama models.
_PAPER_ROWS = {
    "NeuMF": ((.8300, .8830, .9440, .7328, .7448, .7529), (.7010, .8030, .9240, .5523, .5759, .5926)),
    "DIN": ((.7380, .8330, .9240, .5838, .6053, .6174), (.7900, .8620, .9330, .6352, .6519, .6616)),
    "DIEN": ((.7330, .8170, .9070, .5922, .6114, .6229), (.7300, .8200, .9140, .6045, .6251, .6379)),
    "GRU4Rec": ((.4420, .5590, .7350, .3355, .3621, .3855), (.6650, .7970, .9260, .5305, .5610, .5787)),
    "NARM": ((.8410, .8860, .9330, .7475, .7577, .7638), (.5820, .7330, .8930, .4142, .4489, .4703)),
    "SASRec": ((.6550, .7570, .9040, .4938, .5173, .5374), (.8420, .8960, .9410, .7447, .7574, .7636)),
    "CORE": ((.5230, .4632, .6450, .4527, .4632, .4728), (.5170, .5580, .6370, .4392, .4488, .4586)),
    "tallrec": ((.8790, .9050, .9460, .8585, .8644, .8697), (.8580, .9020, .9590, .7708, .7807, .7885)),
    "hierarchical": ((.8910, .9120, .9490, .8597, .8643, .8693), (.9160, .9470, .9750, .8535, .8603, .8611)),
    "recurrent": ((.8910, .9130, .9570, .8632, .8681, .8737), (.9060, .9390, .9840, .8400, .8475, .8534)),
}


def paper_table() -> pd.DataFrame:
    """The paper's Table 2 as a long frame: system, dataset, metric columns."""
    rows = []
    for system, (amazon, mind) in _PAPER_ROWS.items():
        for dataset, values in (("Amazon-M2 (paper)", amazon), ("MIND (paper)", mind)):
            rows.append({"system": system, "label": label(system), "dataset": dataset, **dict(zip(COLUMNS, values))})
    return pd.DataFrame(rows)


ALL = "+all"  # suffix of a baseline trained on every interaction (eval.all_interactions), not only the LLM's users


def label(system: str) -> str:
    if system.endswith(ALL):
        return f"{label(system[:-len(ALL)])} (all users)"
    return LABELS.get(system, system)


def systems(cfg: Any) -> list[str]:
    """The table's rows: the baselines, the ``+all`` rows of ``eval.all_interactions``, the LLM rows."""
    e = cfg.eval
    return [*e.baselines, *(f"{n}{ALL}" for n in e.all_interactions if n in e.baselines), *e.llm]


def test_samples(cfg: Any, prepared: Any = None) -> pd.DataFrame:
    prepared = prepared or prepare.read(cfg)
    samples = prepared.samples[prepared.samples["split"] == "test"].reset_index(drop=True)
    if cfg.eval.test_users:
        samples = samples.head(cfg.eval.test_users)
    if samples.empty:
        raise ValueError("no test users: data.n_test must be > 0")
    return samples


# ----------------------------------------------------------------- the keys of the baselines' scores
RECBOLE_FIELDS = ("eval.recbole_epochs", "eval.recbole_embedding_size", "eval.recbole_max_seq_length",
                  "eval.recbole_learning_rate")


def baseline_key(cfg: Any, name: str) -> dict[str, Any]:
    """Everything a baseline's scores depend on."""
    key: dict[str, Any] = {"system": name, "version": SCORE_VERSION, "samples": samples_key(cfg)}
    base = name.removesuffix(ALL)
    if base != name:  # the raw files are part of samples_key (the data stage's fingerprint)
        key["training"] = "every interaction outside the evaluation users' held-out positives"
    if base == "random":
        key["seed"] = cfg.seed
    elif base in ("tfidf", "embedding"):
        key["text"] = stages.settings(cfg, ["text"])
        if base == "embedding":
            key["model"] = embeddings.identity()
    elif base not in ("popularity", "item_cf"):  # RecBole models
        epochs = "eval.recbole_epochs_all" if base != name else "eval.recbole_epochs"
        key.update(stages.settings(cfg, ("seed", epochs, *RECBOLE_FIELDS[1:])))
        device = recbole_device(cfg)
        if device != "cpu":  # a GPU's kernels round differently: its models are other results (CPU keys unchanged)
            key["device"] = device
    return key


def recbole_device(cfg: Any) -> str:
    """Where RecBole trains: the profile's GPU when there is one (the "(all users)" rows on MIND-large take
    hours on a CPU beside idle GPUs), else the CPU."""
    return "cuda" if llm.resolve_device(cfg.model.device) == "cuda" else "cpu"


# ----------------------------------------------------------------- baselines
def baseline_scores(cfg: Any, name: str, prepared: Any, samples: pd.DataFrame) -> list[np.ndarray]:
    name, regime = name.removesuffix(ALL), name
    train = (all_interactions(cfg, prepared) if regime.endswith(ALL)
             else baselines.training_sequences(prepared.samples))
    if name == "random":
        return baselines.random_scores(samples, cfg.seed)
    if name == "popularity":
        return baselines.popularity_scores(train, samples)
    if name == "item_cf":
        return baselines.item_cf_scores(train, samples)
    if name in ("tfidf", "embedding"):
        texter = ItemTexter.from_config(cfg, prepared.catalog)
        texts = {i: texter(i) for i in prepared.catalog}
        if name == "tfidf":
            return baselines.tfidf_scores(texts, samples)
        return baselines.embedding_scores(texts, samples)

    e = cfg.eval
    trained = stages.digest(baseline_key(cfg, regime))
    if trained not in _TRAINED:  # one model for both protocols (sampled candidates and the whole catalogue)
        longest = max(len(s) for s in train.values())
        epochs = e.recbole_epochs_all if regime.endswith(ALL) else e.recbole_epochs
        _TRAINED[trained] = recbole_models.train(name, train, epochs, e.recbole_embedding_size,
                                                 max(1, min(e.recbole_max_seq_length, longest - 1)),
                                                 e.recbole_learning_rate, cfg.seed, device=recbole_device(cfg))
    return _TRAINED[trained].score(samples)


_TRAINED: dict[str, Any] = {}  # RecBole models trained in this call of :func:`run`, by their key


def all_interactions(cfg: Any, prepared: Any) -> dict[str, list[str]]:
    """The second training regime's sequences (:func:`baselines.all_interaction_sequences`), loaded once per
    call of :func:`run`."""
    key = "sequences:" + stages.digest(samples_key(cfg))
    if key not in _TRAINED:
        _TRAINED[key] = baselines.all_interaction_sequences(preparation.load_raw(cfg).sequences, prepared.samples)
    return _TRAINED[key]


# ----------------------------------------------------------------- LLM rows
def ensure_adapter(cfg: Any, method: str, log: Callable[[str], None] = print, seed: int = 0) -> Path:
    """The adapter fine-tuned with summary ``method``, the ``seed``-th SFT seed and ``cfg``'s other settings,
    trained (as notebook 06 would) if no finished adapter has exactly these settings."""
    settings = sft.adapter_config(cfg, method, seed)
    if stages.is_complete(settings, sft.STAGE):
        return stages.result_dir(settings, sft.STAGE) / "adapter"
    if settings is cfg:
        stages.require(cfg, sft.STAGE)  # the profile's own adapter is notebook 06's: say how to make it
    log(f"training the {method!r} adapter{f' (SFT seed {seed})' if seed else ''} for the table with the sft "
        f"settings of notebook 06 ({stages.result_dir(settings, sft.STAGE)})")
    m = cfg.model
    tokenizer = llm.load_tokenizer(m.recommender)
    base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    # The table needs the adapter, not the zero-shot point of its training curve (notebook 06 shows one);
    # validate_zero_shot is not part of the adapter's fingerprint.
    sft.train(with_overrides(settings, {"sft.validate_zero_shot": False}), base, tokenizer, log=log)
    del base
    llm.release()  # the trained copy of the base model gives its memory back before scoring loads one
    return stages.result_dir(settings, sft.STAGE) / "adapter"


def adapter_id(cfg: Any, method: str, adapter: Path, seed: int = 0) -> dict[str, str]:
    return {"06_sft": stages.fingerprint(sft.adapter_config(cfg, method, seed), sft.STAGE).digest,
            "weights": sft.adapter_digest(adapter)}


def recommender_loader(cfg: Any) -> Callable[[], Any]:
    """The profile's recommender, loaded on the first call (only if something is not cached) and then re-used."""
    m = cfg.model
    return functools.cache(lambda: llm.load_model(m.recommender, m.dtype, m.quantization, m.device))


def score_prompts(cfg: Any, prompts: Sequence[Any], base: Any, tokenizer: Any, adapter: Path | None,
                  desc: str) -> list[np.ndarray]:
    """p(yes) for each candidate of ``prompts``: ``base`` alone (zero-shot) or with ``adapter`` attached."""
    answer = answer_tokens(tokenizer, prompts[0].suffixes[0])
    model = base if adapter is None else load_adapter(cfg, adapter, base)
    try:
        with bar(len(prompts), desc, "user") as progress:
            return score_users(for_scoring(model, cfg.model.scoring_dtype), prompts, answer,
                               cfg.sft.score_batch_users, tokenizer.pad_token_id or 0, progress)
    finally:
        if adapter is not None:
            model.unload()  # the base model without the LoRA layers, for the next row


def summary_id(cfg: Any, method: str) -> str | None:
    """The fingerprint of the summaries an LLM row's prompts carry (None: no summary)."""
    return None if method == "none" else stages.fingerprint(cfg, summarize.SUMMARY_STAGE[method]).digest


def system_key(cfg: Any, name: str, adapter: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """The score-store key of one system of the table (``adapter``: a fine-tuned row's adapter folder, trained
    with the ``seed``-th SFT seed)."""
    if name not in LLM_ROWS:
        return baseline_key(cfg, name)
    method = LLM_ROWS[name]
    return llm_key(cfg, method, summary_id(cfg, method),
                   adapter_id(cfg, method, adapter, seed) if adapter else None)


def run(cfg: Any, log: Callable[[str], None] = print, llm_only: bool = False) -> pd.DataFrame | None:
    """Score every system of ``eval.baselines`` + ``eval.llm`` (each from the score store when its key matches)
    and write the results table to ``07_eval/<fingerprint>/``. ``llm_only``: only the LLM rows (and the
    precision check) into the score store, no table: what a cluster runs over several processes before the
    notebook (``python -m trsr_utils evaluation``)."""
    prepared = prepare.read(cfg)
    samples = test_samples(cfg, prepared)
    names = [n for n in systems(cfg) if n in LLM_ROWS or not llm_only]
    wanted = [n for n in names if n in LLM_ROWS]
    # Fine-tuned rows: one adapter per SFT seed (eval.sft_seeds); seed 0 is notebook 06's settings.
    seeds = range(cfg.eval.sft_seeds)
    every = {n: [ensure_adapter(cfg, LLM_ROWS[n], log, i) for i in seeds] for n in wanted if n != "zero_shot"}
    adapters = {n: a[0] for n, a in every.items()}
    keys = {n: system_key(cfg, n, adapters.get(n)) for n in names}
    base = recommender_loader(cfg)
    tokenizer = llm.load_tokenizer(cfg.model.recommender) if wanted else None

    def compute(name: str, seed: int = 0) -> list[np.ndarray]:
        if name not in LLM_ROWS:
            log(f"{label(name)}: computing scores")
            return baseline_scores(cfg, name, prepared, samples)
        log(f"{label(name)}: scoring {len(samples)} users" + (f" (SFT seed {seed})" if seed else ""))
        prompts = build(cfg, samples, prepared.catalog, summaries_for(cfg, LLM_ROWS[name]), tokenizer)
        adapter = every[name][seed] if name in every else None
        distributed.warn_alone(f"scoring {name} for {len(prompts)} users",
                               f"torchrun --nproc_per_node {{n}} -m trsr_utils evaluation --profile {cfg.profile} "
                               f"--run-dir {cfg.run_dir}")
        return score_prompts(cfg, prompts, base(), tokenizer, adapter, f"scoring {name}")

    frames = {n: cached(scores_path(cfg, keys[n]), samples, lambda n=n: compute(n), log, keys[n]) for n in names}
    more_keys = {n: [system_key(cfg, n, a, i) for i, a in enumerate(every[n]) if i] for n in every}
    by_seed = {n: [frames[n], *(cached(scores_path(cfg, k), samples, lambda n=n, i=i: compute(n, i), log, k)
                                for i, k in enumerate(more_keys[n], start=1))] for n in every}
    if llm_only:  # the LLM scoring of the checks below too (their baselines cost the notebook little)
        precision_check(cfg, prepared, samples, frames, log, base, tokenizer)
        upstream_check(cfg, prepared, samples, {n: f for n, f in frames.items() if n in LLM_ROWS}, log, base,
                       tokenizer)
        return None
    table = results_table(frames, cfg.eval.bootstrap, cfg.seed, by_seed)
    out = stages.result_dir(cfg, STAGE, create=True)
    io.write_parquet(out / "ranks.parquet", ranks_frame(frames, by_seed))
    io.write_text(out / "results.csv", table.to_csv(index=False))
    record = {"n_users": len(samples), "n_candidates": len(baselines.candidates(samples)[0]),
              "rows": table.to_dict(orient="records"), "scores": {n: str(scores_path(cfg, keys[n])) for n in names},
              "sft_seeds": cfg.eval.sft_seeds,
              "seed_scores": {n: [str(scores_path(cfg, k)) for k in [keys[n], *more_keys[n]]] for n in every}}
    precision = precision_check(cfg, prepared, samples, frames, log, base, tokenizer)
    if precision is not None:
        record["precision"] = precision
    try:
        # Both protocols below draw from the raw catalogue (MIND-large: read once, not twice).
        whole = (preparation.with_whole_catalogue(cfg, prepared)
                 if cfg.eval.full_catalogue or cfg.data.negative_source != "upstream" else None)
        upstream = upstream_check(cfg, prepared, samples, frames, log, base, tokenizer, whole)
        if upstream is not None:
            io.write_parquet(out / "upstream_ranks.parquet", upstream.pop("ranks"))
            record["upstream"] = upstream
        if cfg.eval.full_catalogue:
            full = full_catalogue(cfg, prepared, samples, table, log, whole)
            io.write_text(out / "full_catalogue.csv", full.to_csv(index=False))
            record["full_catalogue"] = {"rows": full.to_dict(orient="records"),
                                        "kendall_tau": protocol_agreement(full)}
    finally:
        _TRAINED.clear()
    io.write_json(out / "results.json", record)
    stages.finish(cfg, STAGE)
    log(f"{len(names)} rows ranked for {len(samples)} test users; the table in {io.shown_path(out, cfg.run_dir)}")
    return table


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
    candidate position, so it cannot move.) None when the profile already draws them (``data.negative_source: upstream``) or nothing is to be
    ranked. ``base``/``tokenizer``: :func:`run`'s, re-used; ``whole``: ``prepared`` with every catalogue item
    (default: read from the raw files)."""
    if cfg.data.negative_source == "upstream":
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


def read_upstream(cfg: Any) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """Notebook 07's upstream-negatives check (its record and ranks), or None when the profile draws them."""
    folder = stages.require(cfg, STAGE)
    record = io.read_json(folder / "results.json").get("upstream")
    return None if record is None else (record, io.read_parquet(folder / "upstream_ranks.parquet"))


# ----------------------------------------------------------------- full-catalogue protocol
FULL = "full-catalogue"


def precision_check(cfg: Any, prepared: Any, samples: pd.DataFrame, frames: dict[str, pd.DataFrame],
                    log: Callable[[str], None] = print, base: Callable[[], Any] | None = None,
                    tokenizer: Any = None) -> dict[str, Any] | None:
    """What ``model.scoring_dtype`` changed: the main LLM row (hierarchical, else the first LLM row) scored
    again in the model's own precision, same prompts and adapter; the share of users whose positive's rank moved,
    and by how much p(yes) moved. None when scoring already runs in the model's precision. ``base``/``tokenizer``:
    :func:`run`'s recommender loader and tokenizer, re-used instead of loaded again."""
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


def bootstrap_interval(ranks: np.ndarray, metric: str, n: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric's mean over users (any metric of :func:`metrics.per_user`)."""
    return mean_interval(metrics.per_user(ranks, metric), n, seed, level)


def mean_interval(per_user: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-user values."""
    per_user = np.asarray(per_user, dtype=np.float64)
    if n <= 0 or len(per_user) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = per_user[rng.integers(0, len(per_user), size=(n, len(per_user)))].mean(axis=1)
    tail = (1 - level) / 2
    # inverted_cdf: each end is one of the resampled means (for 0/1 values, a multiple of 1/users), not a value
    # interpolated between two of them that no resample can take.
    return (float(np.quantile(means, tail, method="inverted_cdf")),
            float(np.quantile(means, 1 - tail, method="inverted_cdf")))


def results_table(frames: dict[str, pd.DataFrame], bootstrap: int = 1000, seed: int = 0,
                  by_seed: dict[str, list[pd.DataFrame]] | None = None) -> pd.DataFrame:
    """One row per system: Recall/MRR@3/5/10 (+ NDCG), the 95% interval of Recall@10, users, seconds.

    A system with several SFT seeds (``by_seed``: its frames, seed 0 first) gets the mean of each metric over the
    seeds, ``recall@10_sd`` (the spread between seeds, ddof 1) and an interval over users of each user's hit rate
    averaged over the seeds."""
    rows = []
    for system, frame in frames.items():
        runs = (by_seed or {}).get(system) or [frame]
        per_seed = [metrics.metrics_from_ranks(f["rank"].to_numpy()) for f in runs]
        m = {k: float(np.mean([x[k] for x in per_seed])) for k in per_seed[0]}
        hits = np.mean([metrics.per_user(f["rank"].to_numpy(), "recall@10") for f in runs], axis=0)
        low, high = mean_interval(hits, bootstrap, seed)
        rows.append({"system": system, "label": label(system), **{c: m[c] for c in COLUMNS},
                     "ndcg@10": m["ndcg@10"], "recall@10_low": low, "recall@10_high": high,
                     "seeds": len(runs), "recall@10_sd": float(np.std([x["recall@10"] for x in per_seed], ddof=1))
                     if len(runs) > 1 else float("nan"),
                     "users": len(frame), "seconds": float(frame["seconds"].iloc[0])})
    return pd.DataFrame(rows)


def ranks_frame(frames: dict[str, pd.DataFrame], by_seed: dict[str, list[pd.DataFrame]] | None = None) -> pd.DataFrame:
    """Long frame (system, label, user_id, rank, seed): one row per user and SFT seed (0 for systems without)."""
    parts = []
    for s, f in frames.items():
        for i, run in enumerate((by_seed or {}).get(s) or [f]):
            parts.append(pd.DataFrame({"system": s, "label": label(s), "user_id": run["user_id"],
                                       "rank": run["rank"], "seed": i}))
    return pd.concat(parts, ignore_index=True)


def unseen_positives(cfg: Any, samples: pd.DataFrame, every_interaction: bool = False) -> int:
    """Test positives that never occur in the training sequences (``every_interaction``: in those of the
    ``+all`` rows): ID-based models know nothing about them."""
    prepared = prepare.read(cfg)
    train = (all_interactions(cfg, prepared) if every_interaction
             else baselines.training_sequences(prepared.samples))
    seen = {i for seq in train.values() for i in seq}
    return int(sum(p not in seen for p in samples["positive"]))


def reading(table: pd.DataFrame, n_users: int, n_candidates: int, unseen: int,
            unseen_all: int | None = None) -> list[str]:
    """What the table shows and how sure one can be, in sentences computed from the run."""
    random10 = metrics.random_expectation(n_candidates)["recall@10"]
    width = float((table["recall@10_high"] - table["recall@10_low"]).median())
    above = table[table["recall@10_low"] > random10]["label"].tolist()
    llm = table[table["system"].isin(LLM_ROWS)]
    other = table[~table["system"].isin(LLM_ROWS)]
    out = [f"{n_users} test users: one user moves a Recall@K by {1 / n_users:.3f}, and the median 95% interval of "
           f"Recall@10 is {width:.2f} wide."
           + (" That width is for one system alone; two systems are compared user by user in the paired tests "
              "below, which can separate smaller differences." if width > 0 else "")]
    out.append(f"Recall@10 intervals wholly above a random ranker's {random10:.3f}: "
               + (", ".join(above) if above else "none") + ".")
    if unseen:
        out.append(f"{unseen} of {n_users} test positives never occur in the training sequences: popularity, item-CF "
                   f"and the RecBole models rank them last, which caps their Recall@10 at {1 - unseen / n_users:.2f}. "
                   "The content baselines and the LLM read item text, so they can rank them.")
    if unseen_all is not None and table["system"].str.endswith(ALL).any():
        out.append(f"Trained on every interaction (the '(all users)' rows), {unseen_all} of {n_users} test positives "
                   f"remain unseen: the cap moves from {1 - unseen / n_users:.2f} to {1 - unseen_all / n_users:.2f}.")
    if len(llm) and len(other[other["system"] != "random"]):
        by_system = table.set_index("system")
        a = by_system.loc[significance.best_row(llm)]
        b = by_system.loc[significance.best_row(other, ["random"])]  # the row notebook 07's paired tests name
        overlap = a["recall@10_low"] <= b["recall@10_high"] and b["recall@10_low"] <= a["recall@10_high"]
        out.append(f"Best LLM row: {a['label']} (Recall@10 {a['recall@10']:.3f}); best other row: {b['label']} "
                   f"({b['recall@10']:.3f}). Their intervals "
                   + ("overlap, which alone does not decide it: see the paired comparison below." if overlap
                      else "do not overlap; that is not a test either (an interval from 0 or from every user hit "
                      "has no width): the paired comparison below decides."))
    if "zero_shot" in set(table["system"]):
        out.append("The zero-shot row prompts the frozen recommender with the hierarchical summary.")
        zero = float(table.set_index("system").loc["zero_shot", "recall@10"])
        tuned = llm[llm["system"] != "zero_shot"]
        below = tuned[tuned["recall@10"] < zero]["label"].tolist()
        if len(tuned):
            out.append(f"Fine-tuning against zero-shot ({zero:.3f} Recall@10): {len(tuned) - len(below)} of "
                       f"{len(tuned)} fine-tuned rows at or above it"
                       + (f", below it: {', '.join(below)} (on these users; whether that is more than noise is the "
                          "paired tests' question below, and notebook 06's curves show what the training learned)"
                          if below else "") + ".")
    if n_users < 100:
        out.append("With this few users the table shows the machinery, not a result: do not rank systems by it.")
    return out


def recency(samples: pd.DataFrame, catalog: Any, recent_years: int = 2) -> pd.DataFrame | None:
    """How recent the test users' positives, history items and sampled negatives are: items, the share released in
    the catalogue's ``recent_years`` latest years, and the median year. None where items carry no year (MIND,
    Amazon-M2). A gap between positives and negatives is a shortcut: any text that carries the year finds the
    positive among uniform negatives."""
    years = {i: int(str(a.get("year", ""))[:4]) for i, a in catalog.items() if str(a.get("year", ""))[:4].isdigit()}
    if not years:
        return None
    since = max(years.values()) - recent_years + 1
    groups = {"positives": list(samples["positive"]), "history items": [i for h in samples["history"] for i in h],
              "negatives": [i for n in samples["negatives"] for i in n]}
    rows = []
    for name, items in groups.items():
        y = np.array([years[i] for i in items if i in years])
        rows.append({"items": name, "n": len(y), f"released {since} or later": float((y >= since).mean()) if len(y)
                     else float("nan"), "median year": float(np.median(y)) if len(y) else float("nan")})
    return pd.DataFrame(rows).set_index("items")


def recency_reading(table: pd.DataFrame) -> str:
    """One sentence from :func:`recency`'s table: whether positives are more recent than the negatives."""
    share = table.columns[1]
    pos, hist, neg = (table.loc[k, share] for k in ("positives", "history items", "negatives"))
    gap = pos - neg
    return (f"{pos:.0%} of the positives and {hist:.0%} of the history items were {share}, against {neg:.0%} of the "
            "sampled negatives" + (
                ": a text that carries the year (the item line does) points at the positive, whatever it says about "
                "taste. The sampled protocol is easier than it looks through recency; section 7's whole-catalogue "
                "protocol, where every recent item competes, is the check." if gap > 0.2 else
                ": recency gives the positives no clear edge here."))


def impossible_rows(table: pd.DataFrame) -> list[str]:
    """Rows whose Recall@K or MRR@K falls as K grows: impossible for these metrics (a positive within the top 3 is
    within the top 5), so a misprint of the source, said rather than silently used."""
    found = []
    for values in table.to_dict(orient="records"):
        for kind in ("recall", "mrr"):
            ks = [k for k in (3, 5, 10) if f"{kind}@{k}" in values]
            for small, large in zip(ks, ks[1:]):
                if values[f"{kind}@{large}"] < values[f"{kind}@{small}"]:
                    found.append(f"{values['label']}, {values['dataset']}: {kind}@{large} "
                                 f"{values[f'{kind}@{large}']:.4f} is below {kind}@{small} "
                                 f"{values[f'{kind}@{small}']:.4f}, which cannot be right for a {kind}")
    return found


def with_paper(table: pd.DataFrame, dataset_label: str) -> pd.DataFrame:
    """Our rows (labelled with our dataset) stacked above the paper's rows for the same systems."""
    ours = table.assign(dataset=dataset_label)[["system", "label", "dataset", *COLUMNS]]
    paper = paper_table()
    return pd.concat([ours, paper[paper["system"].isin(table["system"])]], ignore_index=True)


def read_full_catalogue(cfg: Any) -> pd.DataFrame | None:
    """Notebook 07's full-catalogue table (None when ``eval.full_catalogue`` is off)."""
    path = stages.require(cfg, STAGE) / "full_catalogue.csv"
    return pd.read_csv(path) if path.exists() else None


def read_precision(cfg: Any) -> dict[str, Any] | None:
    """Notebook 07's check of ``model.scoring_dtype`` against the model's own precision (None when not used)."""
    return io.read_json(stages.require(cfg, STAGE) / "results.json").get("precision")


def read_ranks(cfg: Any, all_seeds: bool = False) -> pd.DataFrame:
    """Notebook 07's ranks: the first SFT seed's (one row per system and user), or every seed's."""
    ranks = io.read_parquet(stages.require(cfg, STAGE) / "ranks.parquet")
    if "seed" not in ranks:  # written before SFT seeds existed
        ranks["seed"] = 0
    return ranks if all_seeds else ranks[ranks["seed"] == 0].reset_index(drop=True)


def command(cfg: Config, args: Any) -> int:
    """Notebook 07's LLM rows (every fine-tuned row's adapter, trained first if missing, and the precision check)
    into the score store, on one process or several (torchrun / accelerate launch: users shared out, rank 0
    writes; see :mod:`trsr_utils.core.distributed`). Notebook 07 then takes them from the store."""
    run(cfg, log=print if distributed.is_main() else (lambda _: None), llm_only=True)
    return 0
