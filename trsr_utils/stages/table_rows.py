"""The rows of notebook 07's table (also scored by 08 and 09): what each system is called, how its scores are
computed (a baseline, or the recommender with a summary and, fine-tuned, notebook 06's adapter for it) and the
score-store key they are kept under."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines
from trsr_utils.baselines import embeddings, recbole_models
from trsr_utils.core.config import with_overrides
from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.core.progress import bar
from trsr_utils.data import preparation
from trsr_utils.method import llm
from trsr_utils.method.prompts import answer_tokens
from trsr_utils.method.score_store import SCORE_VERSION, llm_key, samples_key
from trsr_utils.method.scoring import for_scoring, score_users
from trsr_utils.method.text import ItemTexter
from trsr_utils.stages import prepare, sft, summarize
from trsr_utils.stages.sft import load_adapter
from trsr_utils.store import stages


LABELS = {
    "random": "Random", "popularity": "Popularity", "item_cf": "Item-CF", "tfidf": "Content: TF-IDF",
    "embedding": "Content: MiniLM embeddings", "NeuMF": "NCF (NeuMF)", "zero_shot": "LLM zero-shot",
    "tallrec": "TALLRec (no summary)", "hierarchical": "LLM-TRSR hierarchical",
    "recurrent": "LLM-TRSR recurrent",
}


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


_TRAINED: dict[str, Any] = {}  # RecBole models trained in one evaluation (until forget_trained), by key


def all_interactions(cfg: Any, prepared: Any) -> dict[str, list[str]]:
    """The second training regime's sequences (:func:`baselines.all_interaction_sequences`), loaded once per
    evaluation (until :func:`forget_trained`)."""
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


def forget_trained() -> None:
    """Drop the RecBole models and training sequences kept by :func:`baseline_scores` during one evaluation."""
    _TRAINED.clear()
