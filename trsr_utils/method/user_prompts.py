"""The recommendation prompts of a split's users: summary, recent items, candidates (notebooks 06-08).

:func:`build` assembles prompts from what it is given (a run's samples and summaries are read by
:func:`trsr_utils.stages.sft.for_split` and :func:`trsr_utils.stages.summarize.summaries_for`). Training
(:mod:`trsr_utils.stages.sft`) and evaluation (:mod:`trsr_utils.stages.evaluation`, :mod:`trsr_utils.stages.ablation`)
build their prompts here, so the model is scored on exactly the token ids it was trained on.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from trsr_utils.baselines import candidates
from trsr_utils.method.prompts import RecommendationPrompter, UserPrompts
from trsr_utils.method.text import ItemTexter


def main_summary(cfg: Any) -> str:
    """The profile's own summary method: ``sft.summary``, hierarchical when that is none (notebook 08's main axis,
    and what notebook 09's prompts and summary retriever use)."""
    return cfg.sft.summary if cfg.sft.summary != "none" else "hierarchical"


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
