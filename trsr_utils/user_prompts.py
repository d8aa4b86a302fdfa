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

from . import audit, chunking, summarize, text
from .baselines import candidates
from .data import prepare
from .prompts import RecommendationPrompter, UserPrompts
from .text import ItemTexter


def main_summary(cfg: Any) -> str:
    """The profile's own summary method: ``sft.summary``, hierarchical when that is none (notebook 08's main axis,
    and what notebook 09's prompts and summary retriever use)."""
    return cfg.sft.summary if cfg.sft.summary != "none" else "hierarchical"


def summaries_for(cfg: Any, method: str, control: str = "") -> dict[str, str] | None:
    """user -> summary text of ``method`` under ``cfg``, or None for "none": hierarchical | recurrent (notebooks
    03/04), template (the no-LLM summary of notebook 05, from the blocks of notebook 02) or oracle (notebook 08's
    leaking positive control: only under the control's own settings, ``sft.summary: oracle``, or when the caller
    names it, ``control=audit.ORACLE``)."""
    if method == "none":
        return None

    if method == "template":
        template = summarize.TemplateSummarizer(prepare.read(cfg).catalog, text.domain_of(cfg))
        frame = summarize.template_summaries(chunking.read_blocks(cfg), template)
    elif method == "oracle":
        prepared = prepare.read(cfg)
        return audit.oracle_summaries(prepared.samples, prepared.catalog, text.domain_of(cfg),
                                      control=audit.ORACLE if cfg.sft.summary == "oracle" else control)
    else:
        frame = summarize.read_summaries(cfg, method)
    return dict(zip(frame["user_id"], frame["summary"]))


def user_parts(cfg: Any, samples: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]],
               summaries: Mapping[str, str] | None, tokenizer: Any,
               candidate_lists: Sequence[Sequence[str]] | None = None) -> list[tuple[str | None, list[str], list[str]]]:
    """Per sample, what its recommendation prompt (pointwise or listwise) shows: the summary (or None), the text
    lines of its last ``prompt.recent_items`` items and of its candidates (the positive first, then the
    negatives; or the sample's list of ``candidate_lists``, in its order: a retriever's items, notebook 09)."""
    if summaries is not None:
        missing = sorted(set(samples["user_id"]) - set(summaries))
        if missing:
            raise ValueError(f"{len(missing)} users have no summary (e.g. {missing[:3]})")
    lists = candidates(samples) if candidate_lists is None else candidate_lists
    if len(lists) != len(samples):
        raise ValueError(f"{len(lists)} candidate lists for {len(samples)} samples")
    texter = ItemTexter.from_config(cfg, catalog, tokenizer)
    k = cfg.prompt.recent_items
    return [(summaries[s.user_id] if summaries is not None else None,
             [texter(i) for i in list(s.history)[-k:]] if k else [], [texter(i) for i in items])
            for s, items in zip(samples.itertuples(index=False), lists)]


def build(cfg: Any, samples: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]],
          summaries: Mapping[str, str] | None, tokenizer: Any,
          candidate_lists: Sequence[Sequence[str]] | None = None) -> list[UserPrompts]:
    """One pointwise prompt set per sample (:func:`user_parts`): a shared prefix and one suffix per candidate."""
    prompter = RecommendationPrompter.from_config(cfg, tokenizer)
    return [prompter.build(*parts) for parts in user_parts(cfg, samples, catalog, summaries, tokenizer,
                                                           candidate_lists)]


def for_split(cfg: Any, split: str, method: str, tokenizer: Any, limit: int = 0) -> tuple[pd.DataFrame,
                                                                                           list[UserPrompts]]:
    """The samples of ``split`` (the first ``limit``, if given) and their prompts with ``method``'s summary."""
    prepared = prepare.read(cfg)
    samples = prepared.samples[prepared.samples["split"] == split].reset_index(drop=True)
    if limit:
        samples = samples.head(limit)
    return samples, build(cfg, samples, prepared.catalog, summaries_for(cfg, method), tokenizer)
