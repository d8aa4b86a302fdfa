"""Notebook 08's grid: its cells (one setting changed at a time around the profile's, and the controls of section 4)
and how each cell is compared with the profile's own setting (paired differences, the shift of p(yes), the
summary's effect over TALLRec with its equivalence test)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trsr_utils.core import io
from trsr_utils.method import audit, metrics, significance
from trsr_utils.method.user_prompts import main_summary
from trsr_utils.stages import sft, summarize
from trsr_utils.store import stages


@dataclass
class Cell:
    axis: str
    value: str
    finetuned: bool
    method: str  # the summary in the prompt: none | hierarchical | recurrent | template | oracle
    overrides: dict[str, Any] = field(default_factory=dict)
    # "": the method's own summaries; a reliance control (audit.CONTROLS: replaced at inference); "shuffled": the
    # method's summaries of the histories in a seeded shuffled order
    control: str = ""

    @property
    def name(self) -> str:
        raw = f"{self.axis}={self.value}-{'ft' if self.finetuned else 'zs'}"
        return re.sub(r"[^A-Za-z0-9=._-]+", "_", raw)

    @property
    def needs_summaries(self) -> bool:
        """Cells that change how summaries are written need their own summaries."""
        return self.control == "shuffled" or any(k.startswith(("chunking.", "model.summarizer", "summary."))
                                                 for k in self.overrides)

    @property
    def is_control(self) -> bool:
        """A cell of section 4 (does the summary matter?), tested in its own family."""
        return self.axis in CONTROL_AXES

    @property
    def label(self) -> str:
        """The cell's value as tables show it: the oracle says what it is wherever it appears."""
        return audit.ORACLE if self.method == "oracle" else self.value


CONTROL_AXES = ("reliance", "positive_control", "order")


RELIANCE_WORDS = {"other_user": "another test user's summary", "empty": "an empty summary",
                  "template": "the template summary"}


def grid(cfg: Any) -> list[Cell]:
    """The profile's grid: every axis value on its own, around the profile's setting."""
    e = cfg.eval
    ft = e.ablation_finetuned
    main = main_summary(cfg)
    # The summary axis is shown zero-shot and fine-tuned (does a summary help a model never taught to use one?);
    # the other axes with one model, the fine-tuned one by default, as in the paper's ablations.
    states = ((False, True) if e.ablation_zero_shot else (True,)) if ft else (False,)
    cells = [Cell("summary", m, tuned, m) for m in ("none", "hierarchical", "recurrent") for tuned in states]
    cells += [Cell("recent_items", str(k), ft, main, {"prompt.recent_items": int(k)}) for k in e.ablation_recent_items]
    # A block-size cell keeps the history the profile covers (items_per_block x max_blocks items): with blocks
    # of 3 and the profile's 5 blocks, 15 of 25 items would be dropped and the cell would measure truncation.
    covered = cfg.chunking.items_per_block * cfg.chunking.max_blocks
    cells += [Cell("items_per_block", str(n), ft, "hierarchical",
                   {"chunking.items_per_block": int(n), "chunking.max_blocks": -(-covered // int(n))})
              for n in e.ablation_items_per_block]
    cells += [Cell("summarizer", m, ft, "hierarchical", {"model.summarizer": m}) for m in e.ablation_summarizers]
    # Does the summary matter? The profile's recommender with its summary replaced at inference; recommenders
    # fine-tuned on an informative (template) and a leaking (oracle) summary; summaries of shuffled histories.
    cells += [Cell("reliance", c, ft, main, control=c) for c in e.reliance_controls if c != main]
    if ft:
        cells += [Cell("positive_control", c, True, c) for c in e.positive_controls if c != main]
    if e.order_test:
        cells.append(Cell("order", "shuffled", ft, "hierarchical", control="shuffled"))
    return cells


def _is_default(cfg: Any, cell: Cell) -> bool:
    return all(getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) == v for k, v in cell.overrides.items())


def is_profile_setting(cfg: Any, cell: Cell) -> bool:
    """Whether the cell is the profile's own recommender: its summary method, the model the grid fine-tunes (or
    not), no setting changed and no control. (On the block-size and summarizer axes, which use the hierarchical
    summary, a profile whose summary is recurrent has no such cell.)"""
    return (cell.method == main_summary(cfg) and cell.finetuned == cfg.eval.ablation_finetuned
            and not cell.control and _is_default(cfg, cell))


def same_as_evaluation(cfg: Any, cell: Cell) -> str | None:
    """The notebook 07 system with exactly this cell's settings, if any."""
    if not _is_default(cfg, cell) or cell.control or cell.method not in ("none", "hierarchical", "recurrent"):
        return None
    if not cell.finetuned:
        return "zero_shot" if cell.method == "hierarchical" else None
    return {"none": "tallrec", "hierarchical": "hierarchical", "recurrent": "recurrent"}[cell.method]


def shuffled_histories(samples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The samples with each history in a seeded random order (the same items; the order test of section 4)."""
    rng = np.random.default_rng(seed)
    out = samples.copy()
    out["history"] = [list(np.asarray(h, dtype=object)[rng.permutation(len(h))]) for h in samples["history"]]
    return out


def summary_tokens(cfg: Any, method: str, users: pd.Series) -> float:
    """Mean summarizer tokens (prompt + generated) per user for ``method`` in ``cfg``'s run folder (the template
    and the oracle use no LLM)."""
    if method in ("none", "template", "oracle"):
        return 0.0

    frame = summarize.read_summaries(cfg, method).set_index("user_id")
    return float(frame.loc[list(users), "llm_tokens"].mean())


def reference(cfg: Any, finetuned: bool) -> str:
    """The name of the cell with the profile's own setting and model state: what every other cell is against."""
    main = main_summary(cfg)
    return Cell("summary", main, bool(finetuned), main).name


def reference_pairs(table: pd.DataFrame, cfg: Any, controls: bool = False) -> list[tuple[str, str]]:
    """Each cell against the profile's own setting with the same model state (zero-shot cells against the
    zero-shot reference); cells scored by the very same scores as their reference are left out (a zero difference
    by construction). ``controls``: the cells of section 4 instead of the ablations (each family is corrected on
    its own)."""
    by_name = table.set_index("cell")
    pairs = []
    for row in table.itertuples():
        ref = reference(cfg, row.finetuned)
        if (row.axis in CONTROL_AXES) == controls and ref in by_name.index and by_name.loc[ref, "scores"] != row.scores:
            pairs.append((row.cell, ref))
    return pairs


def probability_shift(table: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    """Per cell against its reference (same users, same candidates): the mean |Δp(yes)| per candidate, the share
    of users whose positive changed rank, and, for scale, the reference's mean spread of p(yes) across one user's
    candidates (a shift well below it cannot reorder much)."""
    rows = []
    frames = {r.cell: io.read_parquet(r.scores) for r in table.itertuples()}
    for r in table.itertuples():
        ref = reference(cfg, r.finetuned)
        if ref not in frames or ref == r.cell:
            continue
        a, b = frames[r.cell], frames[ref]
        if list(a["user_id"]) != list(b["user_id"]):
            raise ValueError(f"{r.cell} and {ref} scored different users")
        pa, pb = (np.concatenate([np.asarray(x, dtype=float) for x in f["scores"]]) for f in (a, b))
        rows.append({"cell": r.cell, "against": ref, "mean_abs_dp": float(np.abs(pa - pb).mean()),
                     "rank_changed": float((a["rank"].to_numpy() != b["rank"].to_numpy()).mean()),
                     "reference_spread": float(np.mean([np.std(np.asarray(x, dtype=float)) for x in b["scores"]]))})
    return pd.DataFrame(rows, columns=["cell", "against", "mean_abs_dp", "rank_changed", "reference_spread"])


def summary_effect(table: pd.DataFrame, cfg: Any, metric: str = "recall@10", n_resamples: int = 9999) -> pd.DataFrame:
    """The question of the lab: does the summary help the fine-tuned recommender over TALLRec (the same model
    fine-tuned without a summary)? Per LLM summary method: the paired difference (Holm over the methods), the two
    one-sided tests at ``eval.equivalence_margin`` and the one-sentence decision (shown, bounded or undecided, with
    the users a decision would need)."""
    none = Cell("summary", "none", True, "none").name
    cells = [Cell("summary", m, True, m).name for m in ("hierarchical", "recurrent")]
    cells = [c for c in cells if c in set(table["cell"])]
    if none not in set(table["cell"]) or not cells:
        return pd.DataFrame()
    ranks = read_ranks(table[table["cell"].isin([none, *cells])])
    by = {c: g.set_index("user_id")["rank"] for c, g in ranks.groupby("system")}
    rows = []
    for c in cells:
        users = by[none].index
        a, b = metrics.per_user(by[c].reindex(users), metric), metrics.per_user(by[none].reindex(users), metric)
        d = significance.paired_difference(a, b, n_resamples, cfg.seed)
        t = significance.equivalence(a, b, cfg.eval.equivalence_margin)
        rows.append({"cell": c, "method": c.split("=")[1].split("-")[0], "metric": metric, **d,
                     "tost_p": t["p"], "low90": t["low"], "high90": t["high"], "equivalent": t["equivalent"],
                     "margin": t["margin"], "users_to_bound": significance.users_needed_equivalence(d["sd"], t["margin"]),
                     "tost": t})
    out = pd.DataFrame(rows)
    # Each fine-tuned recommender is its best validation checkpoint (or its last): say which, so a difference that is
    # partly the choice of checkpoint (a few validation users) is not read as the summary's alone.
    steps = {m: sft.selected_step(cfg, m) for m in ("none", *out["method"])}
    out["step"] = [steps[m][0] for m in out["method"]]
    out["reference_step"] = steps["none"][0]
    out["steps"] = steps["none"][1]
    out["select"] = cfg.sft.select  # best on validation or last: what the sentence on differing steps says
    out["p_holm"] = significance.holm(out["p"])
    out["decision"] = [significance.decision({**r, "p_holm": r["p_holm"]}, r["tost"], metric)
                       for r in out.to_dict(orient="records")]
    return out.drop(columns=["tost"])


def effect_at_cutoffs(table: pd.DataFrame, cfg: Any,
                      metrics_: tuple[str, ...] = ("recall@3", "recall@5", "mrr@10", "ndcg@10")) -> pd.DataFrame:
    """:func:`summary_effect` at the metrics other than the margin's (Holm over the methods within each): whether
    the answer on Recall@10 depends on the cut-off."""
    frames = [f for f in (summary_effect(table, cfg, m) for m in metrics_) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Every cell's per-user ranks (``system`` = the cell's name), from the score store the table points at."""
    frames = [io.read_parquet(row.scores)[["user_id", "rank"]].assign(system=row.cell) for row in table.itertuples()]
    return pd.concat(frames, ignore_index=True)[["system", "user_id", "rank"]]
