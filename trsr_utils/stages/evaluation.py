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

from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from trsr_utils import baselines
from trsr_utils.core import distributed, io
from trsr_utils.core.config import Config
from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.data import preparation
from trsr_utils.method import llm, metrics, prompts, significance
from trsr_utils.method.score_store import cached, scores_path
from trsr_utils.method.user_prompts import build
from trsr_utils.stages import prepare, sft, summarize
from trsr_utils.stages.protocols import full_catalogue, precision_check, protocol_agreement, upstream_check
from trsr_utils.stages.table_rows import (ALL, all_interactions, baseline_scores, ensure_adapter, forget_trained, label,
                                    recommender_loader, score_prompts, system_key, systems, test_samples)
from trsr_utils.stages.summarize import summaries_for
from trsr_utils.store import stages
from trsr_utils.store.stages import Inputs


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
             "eval.ablation_finetuned", "eval.ablation_zero_shot", "eval.reliance_controls",
             "eval.positive_controls", "eval.order_test", "eval.equivalence_margin", "eval.protocol"),  # the protocol acts through the data/text/sft fields
    models=("model.recommender",), code=prompts.code_parts("recommendation"), inputs=_inputs,
    version=3))  # 2: BOS where the tokenizer adds one; the float64 p(yes); 3: the upstream negatives beside
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
                 if cfg.eval.full_catalogue or (cfg.data.negative_source != "upstream" and cfg.eval.upstream_check)
                 else None)
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
        forget_trained()
    io.write_json(out / "results.json", record)
    stages.finish(cfg, STAGE)
    log(f"{len(names)} rows ranked for {len(samples)} test users; the table in {io.shown_path(out, cfg.run_dir)}")
    return table


def read_upstream(cfg: Any) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """Notebook 07's upstream-negatives check (its record and ranks), or None when the profile draws them."""
    folder = stages.require(cfg, STAGE)
    record = io.read_json(folder / "results.json").get("upstream")
    return None if record is None else (record, io.read_parquet(folder / "upstream_ranks.parquet"))


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


def checkpoints(cfg: Config) -> dict[str, str]:
    """Each fine-tuned row's checkpoint (its first SFT seed's), by the table's label: "step 25 of 75", the step its
    adapter was chosen at (``sft.select``: its best validation score, or the last). Rows compared at different
    checkpoints differ in training as well as in their input, which the table alone would hide."""
    out = {}
    for name in cfg.eval.llm:
        if name != "zero_shot":
            step, steps = sft.selected_step(cfg, LLM_ROWS[name])
            out[label(name)] = f"step {step} of {steps}" if step is not None else "-"
    return out


def checkpoint_reading(cfg: Config) -> list[str]:
    """A sentence when the fine-tuned rows' adapters were chosen at different checkpoints (:func:`checkpoints`)."""
    chosen = {k: v for k, v in checkpoints(cfg).items() if v != "-"}
    if len(set(chosen.values())) < 2:
        return []
    steps = "; ".join(f"{k}: {v}" for k, v in chosen.items())
    hint = "" if cfg.sft.select == "last" else "--set sft.select=last compares them at the final step; "
    return [f"The fine-tuned rows were chosen at different checkpoints ({steps}; sft.select: {cfg.sft.select}): "
            f"a difference between them is in training as well as in what they read ({hint}each adapter's "
            "validations are in 06_sft/<fingerprint>/report.json)."]


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
        rest = other[(other["system"] != "random") & (other["system"] != b.name)]
        tied = rest[np.isclose(rest["recall@10"], b["recall@10"])]["label"].tolist()
        tie = f", tied on Recall@10 with {', '.join(tied)} and chosen by MRR@10" if tied else ""
        out.append(f"Best LLM row: {a['label']} (Recall@10 {a['recall@10']:.3f}); best other row: {b['label']} "
                   f"({b['recall@10']:.3f}{tie}). Their intervals "
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


def recency_reading(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """One sentence from :func:`recency`'s table: whether positives are more recent than the negatives, decided by
    Fisher's exact test on the two shares (``scipy.stats.fisher_exact``), not by the size of the gap alone."""
    share = table.columns[1]
    pos, hist, neg = (table.loc[k, share] for k in ("positives", "history items", "negatives"))
    n_pos, n_neg = int(table.loc["positives", "n"]), int(table.loc["negatives", "n"])
    k_pos, k_neg = round(pos * n_pos), round(neg * n_neg)
    n_hist = int(table.loc["history items", "n"])
    # Percentages from the counts, a half rounded up as the table's 0.165 reads: "{:.0%}" rounds 66/400 to 16%
    # (half to even) and a mean of booleans can land just below the half anyway.
    pct = {k: f"{(200 * c + n) // (2 * n)}%" if n else "-" for k, c, n in
           (("pos", k_pos, n_pos), ("hist", round(hist * n_hist), n_hist), ("neg", k_neg, n_neg))}
    p = float(stats.fisher_exact([[k_pos, n_pos - k_pos], [k_neg, n_neg - k_neg]]).pvalue)
    ratio = f", {pos / neg:.1f} times as often" if neg > 0 else ""
    test = f" (Fisher's exact test over {n_pos} positives and {n_neg} negatives: p = {p:.2g}{ratio if p < alpha else ''})"
    return (f"{pct['pos']} of the positives and {pct['hist']} of the history items were {share}, against "
            f"{pct['neg']} of the sampled negatives" + test + (
                ": a text that carries the year (the item line does) points at the positive, whatever it says about "
                "taste. The sampled protocol is easier than it looks through recency; section 7's whole-catalogue "
                "protocol, where every recent item competes, is the check." if pos > neg and p < alpha else
                ": recency gives the positives no edge these users can show."))


def impossible_rows(table: pd.DataFrame, tolerance: float = 2e-4) -> list[str]:
    """Rows that cannot be right, so a misprint of the source, said rather than silently used:

    - Recall@K or MRR@K falling as K grows (a positive within the top 3 is within the top 5);
    - MRR@K above Recall@K (a user adds at most 1/rank <= 1 to MRR, and 1 to Recall, only when within the top K);
    - MRR growing by more or less than the users who entered the top K can add: the share
      ``Recall@L - Recall@S`` of users ranked S+1..L adds between 1/L and 1/(S+1) each.

    ``tolerance`` allows for published values rounded to four decimals (two roundings per difference)."""
    found = []
    for values in table.to_dict(orient="records"):
        where = f"{values['label']}, {values['dataset']}"
        for kind in ("recall", "mrr"):
            ks = [k for k in (3, 5, 10) if f"{kind}@{k}" in values]
            for small, large in zip(ks, ks[1:]):
                if values[f"{kind}@{large}"] < values[f"{kind}@{small}"]:
                    found.append(f"{where}: {kind}@{large} {values[f'{kind}@{large}']:.4f} is below {kind}@{small} "
                                 f"{values[f'{kind}@{small}']:.4f}, which cannot be right for a {kind}")
        ks = [k for k in (3, 5, 10) if f"recall@{k}" in values and f"mrr@{k}" in values]
        for k in ks:
            if values[f"mrr@{k}"] > values[f"recall@{k}"] + tolerance:
                found.append(f"{where}: mrr@{k} {values[f'mrr@{k}']:.4f} is above recall@{k} "
                             f"{values[f'recall@{k}']:.4f}, which cannot be right")
        for small, large in zip(ks, ks[1:]):
            entered = values[f"recall@{large}"] - values[f"recall@{small}"]
            grew = values[f"mrr@{large}"] - values[f"mrr@{small}"]
            low, high = entered / large, entered / (small + 1)
            if entered >= 0 and grew >= 0 and not low - tolerance <= grew <= high + tolerance:
                found.append(f"{where}: mrr@{large} - mrr@{small} = {grew:.4f}, but the {entered:.4f} of users ranked "
                             f"{small + 1}-{large} (recall@{large} - recall@{small}) add between {low:.4f} and "
                             f"{high:.4f}, which cannot be right")
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
