"""The recommendation prompts of a split's users: summary, recent items, candidates (notebooks 06-08).

:func:`build` assembles prompts from what it is given; :func:`for_split`
reads the samples (notebook 01) and the summaries of one method (notebook 03
or 04) for the given settings first. Training (:mod:`.sft`) and evaluation
(:mod:`.evaluation`, :mod:`.ablation`) build their prompts here, so the model
is scored on exactly the token ids it was trained on.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from .prompts import RecommendationPrompter, UserPrompts


def summaries_for(cfg: Any, method: str) -> dict[str, str] | None:
    """user -> summary text of ``method`` (hierarchical | recurrent) under ``cfg``, or None for "none"."""
    if method == "none":
        return None
    from . import summarize

    frame = summarize.read_summaries(cfg, method)
    return dict(zip(frame["user_id"], frame["summary"]))


def build(cfg: Any, samples: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]],
          summaries: Mapping[str, str] | None, tokenizer: Any,
          candidate_lists: Sequence[Sequence[str]] | None = None) -> list[UserPrompts]:
    """One prompt set per sample: the summary (or none), the last ``prompt.recent_items`` items, and the
    candidates (the positive first, then the negatives; or each sample's list of ``candidate_lists``, in its
    order: a retriever's items, notebook 09)."""
    from .text import ItemTexter

    if summaries is not None:
        missing = sorted(set(samples["user_id"]) - set(summaries))
        if missing:
            raise ValueError(f"{len(missing)} users have no summary (e.g. {missing[:3]})")
    texter = ItemTexter.from_config(cfg, catalog, tokenizer)
    prompter = RecommendationPrompter.from_config(cfg, tokenizer)
    k = cfg.prompt.recent_items
    built = []
    lists = candidate_lists if candidate_lists is not None else [[s.positive, *s.negatives]
                                                                 for s in samples.itertuples(index=False)]
    for s, items in zip(samples.itertuples(index=False), lists):
        recent = [texter(i) for i in list(s.history)[-k:]] if k else []
        candidates = [texter(i) for i in items]
        built.append(prompter.build(summaries[s.user_id] if summaries is not None else None, recent, candidates))
    return built


def for_split(cfg: Any, split: str, method: str, tokenizer: Any, limit: int = 0) -> tuple[pd.DataFrame,
                                                                                           list[UserPrompts]]:
    """The samples of ``split`` (the first ``limit``, if given) and their prompts with ``method``'s summary."""
    from .data import prepare

    prepared = prepare.read(cfg)
    samples = prepared.samples[prepared.samples["split"] == split].reset_index(drop=True)
    if limit:
        samples = samples.head(limit)
    return samples, build(cfg, samples, prepared.catalog, summaries_for(cfg, method), tokenizer)
