"""Notebook 08: the ablations a reader of the paper asks about, as a cached grid.

Each *cell* changes one thing around the profile's setting (one factor at a
time) and ranks the same test users' candidates as notebook 07:

* ``summary``: none / hierarchical / recurrent, each zero-shot and fine-tuned
  (the other axes use the fine-tuned model, or the zero-shot one with
  ``eval.ablation_finetuned: false``)
* ``recent_items``: how many recent items the prompt shows (k)
* ``items_per_block``: block size of the hierarchical summary (new summaries
  of the test users with the frozen summarizer; scored with the adapter
  trained on the profile's block size)
* ``summarizer``: another summarizer model (where the profile lists one)

and the controls that ask whether the summary matters (section 4 of the notebook; their own family of paired
tests, so they do not dilute the ablations' Holm correction):

* ``reliance``: the fine-tuned recommender scored with its summary replaced at inference (no training): another
  test user's summary (a seeded derangement), an empty summary, the template summary (``eval.reliance_controls``);
* ``positive_control``: a recommender fine-tuned and scored with the template summary (informative, no LLM), and
  with the *oracle* summary that names the held-out positive's attributes: it leaks the answer on purpose, is
  labelled so in every table, and is never a result (``eval.positive_controls``);
* ``order``: the test users' histories summarized again in a seeded shuffled order (``eval.order_test``): does
  the summarizer use the sequence?

Scores go to the run's score store (``cache/scores/<key>.parquet``, see
:mod:`trsr_utils.stages.evaluation`) under a key of everything they depend on, so a
cell whose settings equal one of notebook 07's rows finds that row's scores,
an interrupted sweep resumes where it stopped, and a re-run costs nothing.
Cells needing new summaries (another block size or summarizer) summarize the
test users in their own run folder ``08_ablations/cells/<cell>-<key>/`` with
its own LLM call cache, unless notebook 03 already ran with those settings.
The table goes to ``08_ablations/<fingerprint>/``.

Cost is counted in LLM tokens per user: the summarizer's prompt + generated
tokens for the user's summary, and the recommender's tokens to score 21
candidates (the shared prefix once, plus every candidate suffix).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from trsr_utils.method import audit, llm, metrics, prompts, significance
from trsr_utils.core import distributed, io
from trsr_utils.stages import evaluation
from trsr_utils.stages import table_rows
from trsr_utils.method import score_store
from trsr_utils.store import stages
from trsr_utils.core.config import REPO_ROOT, Config, resolve_config, with_overrides
from trsr_utils.stages import chunking, prepare, sft, summarize
from trsr_utils.store.stages import Inputs
from trsr_utils.method.user_prompts import build
from trsr_utils.stages.grid import (CONTROL_AXES, RELIANCE_WORDS, Cell, grid, is_profile_setting, probability_shift,
                                    read_ranks, reference_pairs, same_as_evaluation, shuffled_histories,
                                    summary_effect, summary_tokens)
from trsr_utils.stages.summarize import summaries_for



def _inputs(cfg: Config) -> Inputs:
    """08 reads, per grid cell, the cell's summary stage and adapter; a cell's own settings are labelled by the cell
    (``03_hierarchical[recent_items=1]``) where they give another result than the run's."""
    out = {"01_data": ("01_data", cfg)}
    for cell in grid(cfg):
        cell_cfg = with_overrides(cfg, cell.overrides)
        for label, (s, c) in sft.llm_inputs(cfg, cell_cfg, cell.method, cell.finetuned).items():
            own = s == "06_sft" or stages.same_result(cfg, c, s)
            out[label if own else f"{label}[{cell.name}]"] = (s, c)
    return out


STAGE = stages.register(stages.Stage(
    "08_ablations", "08_ablations", (prepare.STAGE, chunking.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT,
                                     sft.STAGE),
    ("seed", "eval.test_users", "eval.ablation_recent_items", "eval.ablation_items_per_block",
     "eval.ablation_summarizers", "eval.ablation_finetuned", "eval.ablation_zero_shot", "eval.reliance_controls",
     "eval.positive_controls", "eval.order_test", "eval.equivalence_margin", "prompt", "text", "chunking",
     "summary", "sft.summary", "model.device", "model.scoring_dtype"),
    exclude=("summary.batch_size",), models=("model.recommender", "model.summarizer"),
    code=prompts.code_parts("block", "merge", "update", "recommendation"),
    inputs=_inputs, version=3))  # 2: BOS where the tokenizer adds one; the float64 p(yes); 3: the controls of section 4


def cell_dir(cfg: Any, cell: Cell, samples_key: dict[str, Any]) -> Path:
    """The run folder of a cell's own summaries: named by the cell and what its summaries depend on."""
    key = stages.digest({"03": stages.fingerprint(with_overrides(cfg, cell.overrides), "03_hierarchical").digest,
                         "samples": samples_key, **({"order": cell.control, "seed": cfg.seed} if cell.control else {})})
    return Path(cfg.run_dir) / STAGE.name / "cells" / f"{cell.name}-{key[:stages.DIGEST_CHARS]}"


def prepare_summaries(cfg: Any, cell: Cell, prepared: Any, samples: pd.DataFrame,
                      log: Callable[[str], None] = print) -> tuple[Any, str]:
    """(config of the cell's own run folder, id of its summaries): the test users' blocks and hierarchical
    summaries under the cell's settings, computed there unless already complete."""
    sub = with_overrides(cfg, cell.overrides, str(cell_dir(cfg, cell, score_store.samples_key(cfg))))
    summary_id = stages.digest({"cell_summaries": stages.fingerprint(sub, "03_hierarchical").digest,
                                "users": list(samples["user_id"]),
                                **({"order": cell.control, "seed": cfg.seed} if cell.control else {})})
    if stages.is_complete(sub, "03_hierarchical"):
        return sub, summary_id
    if cell.control == "shuffled":
        samples = shuffled_histories(samples, cfg.seed)
    blocks, meta = chunking.cut_blocks(sub, samples, prepared.catalog)
    if distributed.is_main():
        chunking.write_blocks(sub, blocks, meta)
    log(f"{cell.name}: summarizing {len(samples)} test users ({len(blocks)} blocks)")
    summarize.summarize(sub, "hierarchical", blocks, prepared.catalog, log=log, cache_from=cfg)
    return sub, summary_id


def run(cfg: Any, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Score every cell of the grid (from the score store when its key matches) and write the table to
    ``08_ablations/<fingerprint>/``."""
    prepared = prepare.read(cfg)
    samples = table_rows.test_samples(cfg, prepared)
    tokenizer = llm.load_tokenizer(cfg.model.recommender)
    base = table_rows.recommender_loader(cfg)

    # Every cell's summaries first, each summarizer loaded, used and released in turn, before the recommender
    # is loaded: on a GPU the paper's 30B summarizer and 7B recommender would not share one card. New summaries
    # only where no notebook-03 result has the cell's settings (a block size equal to the profile's is the
    # profile's own summary).
    summary_of = {}
    for cell in grid(cfg):
        cell_cfg = with_overrides(cfg, cell.overrides)
        summary_of[cell.name] = cell_cfg, table_rows.summary_id(cell_cfg, cell.method)
        if cell.needs_summaries and (cell.control or not stages.is_complete(cell_cfg, "03_hierarchical")):
            summary_of[cell.name] = prepare_summaries(cfg, cell, prepared, samples, log)
            llm.release()

    users = list(samples["user_id"])
    rows = []
    for cell in grid(cfg):
        cell_cfg = with_overrides(cfg, cell.overrides)
        adapter = table_rows.ensure_adapter(cfg, cell.method, log) if cell.finetuned else None
        summary_cfg, summary_id = summary_of[cell.name]
        summaries = summaries_for(summary_cfg, cell.method,
                                  control=audit.ORACLE if cell.axis == "positive_control" else "")
        if cell.control in audit.CONTROLS:  # the summary replaced at inference: its key says by what
            template = summaries_for(cfg, "template") if cell.control == "template" else None
            summaries = audit.replaced(summaries, users, cell.control, cfg.seed, template)
            summary_id = stages.digest({"control": cell.control, "summary": summary_id, "seed": cfg.seed,
                                        "template": table_rows.summary_id(cfg, "template") if template else None})
        key = score_store.llm_key(cell_cfg, cell.method, summary_id,
                                  table_rows.adapter_id(cfg, cell.method, adapter) if adapter else None)
        source = same_as_evaluation(cfg, cell)
        if source and table_rows.system_key(cfg, source, adapter) != key:
            source = None

        prompts = build(cell_cfg, samples, prepared.catalog, summaries, tokenizer)

        def compute(cell=cell, prompts=prompts, adapter=adapter) -> list[np.ndarray]:
            log(f"{cell.name}: scoring {len(samples)} users")
            return table_rows.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"scoring {cell.name}")

        frame = score_store.cached(score_store.scores_path(cfg, key), samples, compute, log, key)
        m = metrics.metrics_from_ranks(frame["rank"])
        paid = cell.method if cell.control not in ("empty", "template") else "none"  # what the shown summary cost
        rows.append({
            "cell": cell.name, "axis": cell.axis, "value": cell.label, "finetuned": cell.finetuned,
            "method": cell.method, "control": cell.control, "source": f"07:{source}" if source else "08",
            "profile_setting": is_profile_setting(cfg, cell),
            **{c: m[c] for c in evaluation.COLUMNS},
            "summary_tokens_per_user": summary_tokens(summary_cfg, paid, samples["user_id"]),
            "scoring_tokens_per_user": float(np.mean([len(p.prefix_ids) + sum(map(len, p.suffix_ids))
                                                      for p in prompts])),
            "seconds": float(frame["seconds"].iloc[0]), "users": len(frame),
            "scores": str(score_store.scores_path(cfg, key)),
        })
    table = pd.DataFrame(rows)
    table["llm_tokens_per_user"] = table["summary_tokens_per_user"] + table["scoring_tokens_per_user"]
    if distributed.is_main():  # under a launcher every process holds the table; rank 0 writes it
        out = stages.result_dir(cfg, STAGE, create=True)
        io.write_text(out / "results.csv", table.to_csv(index=False))
        io.write_json(out / "results.json", {"n_users": len(samples), "rows": table.to_dict(orient="records")})
        stages.finish(cfg, STAGE)
        log(f"{len(table)} grid cells for {len(samples)} test users; the table in {io.shown_path(out, cfg.run_dir)}")
    distributed.barrier()
    return table


def reading(table: pd.DataFrame, metric: str = "recall@10", ranks: pd.DataFrame | None = None,
            bootstrap: int = 1000, seed: int = 0) -> list[str]:
    """What the grid shows, in sentences computed from its table: each axis's spread against what one user is worth.
    ``ranks`` (:func:`read_ranks`): the interval width is the median 95% bootstrap interval of one cell, as notebook
    07 reports it for one system; without them, the normal approximation at a rate of 0.5."""
    n = int(table["users"].iloc[0])
    if ranks is not None:
        width = float(np.median([np.subtract(*evaluation.bootstrap_interval(g["rank"].to_numpy(), metric, bootstrap,
                                                                            seed)[::-1])
                                 for _, g in ranks.groupby("system")]))
        how = f"the median 95% bootstrap interval of one cell's {metric} (notebook 07's measure for one system)"
    else:
        width = 2 * 1.96 * 0.5 / n ** 0.5  # a 95% interval of a rate near 0.5 (normal approximation)
        how = f"a 95% interval of {metric} at a rate of 0.5 (normal approximation)"
    out = [f"{n} test users: one user moves {metric} by {1 / n:.3f}; {how} is {width:.2f} wide. That width is for one "
           "cell alone: the paired tests below compare cells user by user and can separate smaller differences."]
    controls = table[table["axis"].isin(CONTROL_AXES)]
    table = table[~table["axis"].isin(CONTROL_AXES)]
    for axis, sub in table.groupby("axis", sort=False):
        for tuned, cells in sub.groupby("finetuned", sort=False):
            if len(cells) < 2:
                continue
            best, worst = cells.loc[cells[metric].idxmax()], cells.loc[cells[metric].idxmin()]
            users = round((best[metric] - worst[metric]) * n)
            where = f"{axis} ({'fine-tuned' if tuned else 'zero-shot'})"
            if users == 0:
                out.append(f"{where}: the same {metric}, {best[metric]:.3f}, for every value.")
                continue
            out.append(f"{where}: {metric} from {worst[metric]:.3f} ({worst['value']}) to {best[metric]:.3f} "
                       f"({best['value']}), {users} user{'s' if users != 1 else ''} apart.")
    cost = table[table["axis"] == "summary"].groupby("method")["summary_tokens_per_user"].mean()
    if "none" in cost and len(cost) > 1:
        extra = ", ".join(f"{m} {v:.0f}" for m, v in cost.items() if m != "none")
        out.append(f"A summary costs the summarizer LLM tokens per test user ({extra}; the mean over these test users, "
                   "where notebooks 03-04 average over every summarized user) on top of scoring; "
                   "whether it buys quality is read from the summary axis above, within its uncertainty.")
    if len(controls):
        out.append(f"{len(controls)} control cell{'s' if len(controls) != 1 else ''} (section 4) "
                   f"{'are' if len(controls) != 1 else 'is'} read there, in "
                   f"{'their' if len(controls) != 1 else 'its'} own family of tests.")
    return out


def cell_labels(table: pd.DataFrame) -> dict[str, str]:
    """Readable names of the cells (figures, tables): the axis and its value in words."""
    words = {"reliance": lambda v: f"reliance: {RELIANCE_WORDS.get(v, v)}",
             "positive_control": lambda v: "positive control: oracle (leaks the answer)" if v == audit.ORACLE
             else f"positive control: fine-tuned on the {v}", "order": lambda v: "order test: shuffled histories"}
    return {r.cell: words[r.axis](r.value) if r.axis in words else f"{r.axis}={r.value}"
            + (" (fine-tuned)" if r.finetuned else " (zero-shot)") for r in table.itertuples()}


def controls_reading(table: pd.DataFrame, paired: pd.DataFrame, shift: pd.DataFrame, effect: pd.DataFrame,
                     random: Mapping[str, float] | None = None) -> list[str]:
    """What the controls say about why the summary helps or not, in sentences computed from their tables (every
    metric of the paired tests read, not only Recall@10): is the reference above chance, does the recommender read
    the summary (reliance), can it learn from one at all (positive controls), does the summarizer use the order,
    and the decision on the summary's effect over TALLRec."""
    out = [f"{r.method}: {r.decision}." for r in effect.itertuples()] if len(effect) else []
    chosen = effect.dropna(subset=["step", "reference_step"]) if "step" in effect else effect.iloc[0:0]
    if len(chosen) and (chosen["step"] != chosen["reference_step"]).any():
        ref = f"{chosen['reference_step'].iloc[0]:.0f}"
        # Records made before sft.select existed carry no "select": they were best-on-validation.
        if "select" in chosen and (chosen["select"] == "last").all():
            lengths = "; ".join(f"{r.method} {r.step:.0f}" for r in chosen.itertuples())
            out.append(f"Each fine-tuned recommender is its last checkpoint, and they trained for different numbers "
                       f"of steps (TALLRec {ref}; {lengths}): a difference between them is the summary's together "
                       "with the training length, not the summary's alone.")
        else:
            steps = "; ".join(f"{r.method} at step {r.step:.0f}" for r in chosen.itertuples())
            out.append(f"Each fine-tuned recommender is its best validation checkpoint, and they were chosen at "
                       f"different steps (TALLRec at step {ref}; {steps}"
                       + (f"; of {chosen['steps'].iloc[0]:.0f} trained" if pd.notna(chosen["steps"].iloc[0]) else "")
                       + "): a difference between them is the summary's together with that choice, not the "
                       "summary's alone (each adapter's training report, 06_sft/<fingerprint>/report.json, lists "
                       "every checkpoint's validation; notebook 06 plots the profile's own adapter; --set "
                       "sft.select=last compares them all at the final step).")
    n = int(table["users"].iloc[0]) if len(table) else 0
    by_cell = table.set_index("cell")
    refs = {c for c in (paired["b"] if len(paired) else [])}
    if random and n:
        for ref in sorted(refs):
            r10, chance = float(by_cell.loc[ref, "recall@10"]), random["recall@10"]
            width = 1.96 * (chance * (1 - chance) / n) ** 0.5
            out.append(f"The reference ({ref}) reaches {r10:.3f} Recall@10 where a random order reaches {chance:.3f}"
                       + (f": within the ±{width:.2f} that {n} users' chance alone spans, so on Recall@10 the "
                          "reference is not told apart from a random ranker here, and the paired tests below may "
                          "compare rankers that are all at chance." if abs(r10 - chance) <= width else "."))
    moved = shift.set_index("cell") if len(shift) else pd.DataFrame()
    for cell in table[table["axis"].isin(CONTROL_AXES)].itertuples():
        rows = paired[paired["a"] == cell.cell] if len(paired) else pd.DataFrame()
        if rows.empty:
            continue
        main_row = rows[rows["metric"] == "recall@10"].iloc[0] if (rows["metric"] == "recall@10").any() else rows.iloc[0]
        better = sorted(rows[rows["significant"] & (rows["diff"] > 0)]["metric"])
        worse = sorted(rows[rows["significant"] & (rows["diff"] < 0)]["metric"])
        sig = (f"significant after Holm on {', '.join(better + worse)}" if better or worse else
               "no metric differs after Holm")
        change = (f"; p(yes) moves by {moved.loc[cell.cell, 'mean_abs_dp']:.3f} per candidate (the reference's spread "
                  f"across a user's candidates: {moved.loc[cell.cell, 'reference_spread']:.3f}) and the positive's "
                  f"rank changes for {moved.loc[cell.cell, 'rank_changed']:.0%} of users"
                  if cell.cell in moved.index else "")
        what = {"reliance": f"with the summary replaced by {RELIANCE_WORDS.get(cell.value, cell.value)}",
                "positive_control": f"fine-tuned and scored with the {cell.value} summary",
                "order": "with summaries of the histories in a shuffled order"}[cell.axis]
        out.append(f"{what}: {main_row['diff']:+.3f} {main_row['metric']} against the profile's setting "
                   f"({significance.p_text(main_row['p'])}, {significance.p_text(main_row['p_holm'], 'Holm')}; {sig})"
                   f"{change}.")
        if cell.control == "other_user":
            if worse:
                out.append(f"The recommender reads whose summary it is: another user's summary costs it "
                           f"{-main_row['diff']:.3f} {main_row['metric']}.")
            elif better:
                out.append(f"Another user's summary ranks *better* ({', '.join(better)}): the profile's summary does "
                           "not help this recommender; what it reads in a summary acts as noise.")
            else:
                out.append("The recommender is not shown to use whose summary it reads: another user's summary is not "
                           f"shown to rank worse ({main_row['diff']:+.3f} {main_row['metric']}, "
                           f"{significance.p_text(main_row['p'])} on {n} users: a difference these users cannot "
                           "separate from chance, not equal ranking)"
                           + (" and it moves the scores (the text acts as noise)." if cell.cell in moved.index
                              and moved.loc[cell.cell, "rank_changed"] > 0 else "."))
        if cell.method == "oracle":
            out.append("The oracle leaks the positive's attributes (a control, never a result): " + (
                "a recommender can learn to use a summary that carries the answer, so the bottleneck is what the "
                "summaries carry." if better else
                f"even a summary that carries the answer is not shown to help on these {n} users; if that holds with "
                "enough users, the bottleneck is the recommender's training, not the summarizer."))
        if cell.method == "template" and cell.axis == "positive_control":
            out.append("The no-LLM template " + ("beats the LLM summary: the bottleneck is the summarizer." if better
                                                 else "is not shown to beat the LLM summary."))
    return out


def cutoffs_reading(others: pd.DataFrame) -> list[str]:
    """Whether the decision on Recall@10 (the margin's metric) holds at the other metrics (:func:`effect_at_cutoffs`):
    per method, the metrics where the difference is shown after Holm, with their sign."""
    out = []
    for method, group in (others.groupby("method", sort=False) if len(others) else []):
        shown = group[group["p_holm"] < significance.ALPHA]
        diffs = ", ".join(f"{r.metric} {r.diff:+.3f}" for r in group.itertuples())
        if len(shown):
            out.append(f"{method} at the other metrics ({diffs}): the difference is shown on "
                       + ", ".join(f"{r.metric} ({significance.p_text(r.p_holm, 'Holm p')})"
                                   for r in shown.itertuples())
                       + "; the decision above is on recall@10 only, where the margin is set.")
        else:
            out.append(f"{method} at the other metrics ({diffs}): none is shown to differ after Holm.")
    return out


# The recorded control results of the runs that decide (DECIDING below), shipped with the repository so that
# notebook 08 on the demo prints them beside its own cells. Written by `python -m trsr_utils ablation --record`.
SHIPPED = REPO_ROOT / "docs" / "results" / "controls.json"


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Plain JSON rows (numpy scalars and NaN made JSON's own)."""
    return json.loads(frame[[c for c in columns if c in frame]].to_json(orient="records")) if len(frame) else []


def control_results(cfg: Any, table: pd.DataFrame) -> dict[str, Any]:
    """What section 4 found on this run, with the run's fingerprint and commit: the decision on the summary's
    effect, each control's paired difference (Holm within the controls) and score shift, and the reading."""
    pairs = significance.compare(read_ranks(table), reference_pairs(table, cfg, controls=True), seed=cfg.seed)
    shift, effect = probability_shift(table, cfg), summary_effect(table, cfg)
    rec = stages.record(stages.result_dir(cfg, STAGE)) or {}
    rows = pairs[pairs["metric"] == "recall@10"] if len(pairs) else pairs
    fp = stages.fingerprint(cfg, STAGE)
    return {"profile": cfg.profile, "fingerprint": fp.digest, "parts": fp.parts, "git": rec.get("git"),
            "users": int(table["users"].iloc[0]), "equivalence_margin": cfg.eval.equivalence_margin,
            "effect": _records(effect, ["method", "diff", "low", "high", "p", "p_holm", "tost_p", "low90", "high90",
                                        "equivalent", "users_to_bound", "decision", "step", "reference_step",
                                        "steps", "select"]),
            "controls": _records(rows, ["a", "b", "mean_a", "mean_b", "diff", "low", "high", "p", "p_holm",
                                        "significant"]),
            "shift": _records(shift, ["cell", "mean_abs_dp", "rank_changed", "reference_spread"]),
            "reading": controls_reading(table, pairs, shift, effect,
                                        metrics.random_expectation(1 + cfg.data.eval_negatives))}


def record_controls(cfg: Any, table: pd.DataFrame, path: Path = SHIPPED) -> Path:
    """Add (or replace) this profile's control results in the shipped results file."""
    shipped = shipped_controls(path) or {"runs": {}}
    shipped["runs"][cfg.profile] = control_results(cfg, table)
    return io.write_json(path, shipped)


def shipped_controls(path: Path = SHIPPED) -> dict[str, Any] | None:
    """The shipped control results (None when this copy has none)."""
    return io.read_json(path) if Path(path).exists() else None


# The profiles whose recorded findings notebook 08 prints beside the demo's: the long histories, the course, and each
# with every free user as a test user (sized to decide).
DECIDING = ("course-long", "course", "course-all", "course-long-all")


def _record_command(profile: str) -> str:
    return (f"`python -m trsr_utils run --profile {profile} --only 01,02,03,04,05,06,07`, then "
            f"`python -m trsr_utils ablation --profile {profile} --record docs/results/controls.json`")


def fingerprints_now(shipped: dict[str, Any] | None) -> dict[str, stages.Fingerprint]:
    """Each shipped profile's notebook-08 fingerprint under this copy's code, settings, data and models (what a
    run made now would carry; nothing is run)."""
    return {p: stages.fingerprint(resolve_config(p), STAGE) for p in ((shipped or {}).get("runs") or {})}


def _p_as_now(line: str) -> str:
    """A recorded reading's p-values as the readings print them now (:func:`significance.p_text`): records made
    before it print a p below .0005 as 0.000, which a permutation p never is, and "Holm 0.654" without "="."""
    line = re.sub(r"\b(p|Holm p|TOST p) = 0\.000\b", r"\1 < 0.001", line)
    line = re.sub(r"\b(Holm|Holm p) 0\.000\b", r"\1 < 0.001", line)
    return re.sub(r"\b(Holm|Holm p) (\d\.\d{3})\b", r"\1 = \2", line)  # "Holm 0.654" as now: "Holm = 0.654"


def shipped_reading(shipped: dict[str, Any] | None, now: Mapping[str, stages.Fingerprint] | None = None) -> str:
    """The shipped results as notebook 08 prints them (Markdown), and for each deciding profile not recorded in
    them, what to run (course-long took about 4 hours on 2 cores, docs/results/course-long.md). With ``now``
    (:func:`fingerprints_now`), a result recorded under another fingerprint than its profile gives today is
    marked stale, with what changed where the record keeps its fingerprint's parts: it is that run's finding,
    kept beside the code that moved on, not this copy's."""
    runs = (shipped or {}).get("runs") or {}
    out = [] if runs else [f"**No recorded results of the deciding runs ship with this copy** ({SHIPPED.name} is "
                           "missing or empty)."]
    for profile, run in runs.items():
        commit = (run.get("git") or {}).get("commit", "?")
        out.append(("\n" if out else "") + f"**{profile}** ({run['users']} test users; 08's fingerprint "
                   f"{run['fingerprint'][:12]}, commit "
                   f"{str(commit)[:10]}):")
        fp = (now or {}).get(profile)
        if fp is not None and fp.digest != run["fingerprint"]:
            changed = stages.diff(run["parts"], fp.parts) if run.get("parts") else []
            out.append(f"- **Stale**: this copy's {profile} profile gives fingerprint {fp.digest[:12]} (" + (
                "; ".join(changed[:6]) + ("; ..." if len(changed) > 6 else "") if changed else
                "code, settings, data or models changed since; the record keeps only its digest") +
                f"). The lines below are the finding of commit {str(commit)[:10]}, in that commit's wording; to have "
                "this copy's, run "
                f"{_record_command(profile)}.")
        out += [f"- {_p_as_now(line)}" for line in run["reading"]]
    out += [f"\n**{p}**: not recorded in this copy; make it once with {_record_command(p)} (how long it takes, and on "
            f"which CPU, is in the comment at the top of profiles/{p}.yaml)." for p in DECIDING if p not in runs]
    return "\n".join(out)


def arguments(parser: Any) -> None:
    parser.add_argument("--record", metavar="PATH", default=None,
                        help=f"add this run's control results (section 4) to a results file, e.g. {SHIPPED}")


def command(cfg: Config, args: Any) -> int:
    """Notebook 08's grid from the command line, on one process or several (torchrun / accelerate launch: each
    cell's summaries and scores shared out, rank 0 writes; see :mod:`trsr_utils.core.distributed`)."""
    table = run(cfg, log=print if distributed.is_main() else (lambda _: None))
    if distributed.is_main():
        print(table[["cell", "recall@10", "seconds"]].to_string(index=False))
        if args.record:
            print(f"recorded {cfg.profile}'s control results in {record_controls(cfg, table, Path(args.record))}")
    return 0
