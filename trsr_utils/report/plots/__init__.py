"""Figures the notebooks show (seaborn on matplotlib); each returns its Figure.

By notebook: :mod:`.summaries` (01-05), :mod:`.training` (06), :mod:`.ranking` (07-08), :mod:`.beyond` (09-10);
:mod:`.common` holds what they share and sets the headless backend before any of them imports pyplot.
``trsr_utils.report.plots`` re-exports every figure."""

from __future__ import annotations

from trsr_utils.report.plots.common import RANDOM_LABEL
from trsr_utils.report.plots.summaries import (audit_specificity, compare_summaries, drift_by_step, history_lengths,
                                               predictiveness, summary_cost, token_distributions)
from trsr_utils.report.plots.training import auc_pairs, sft_curves
from trsr_utils.report.plots.ranking import (AXIS_WORDS, MODELS, VALUE_PREFIX, ablation_axes, cost_vs_quality,
                                             forest, metric_bars, ours_vs_paper, protocols, rank_distribution)
from trsr_utils.report.plots.beyond import listwise_vs_pointwise, position_bias, rank_moves, stage_hours, two_stage
