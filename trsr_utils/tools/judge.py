"""Does one setting change what a run finds? Two runs of a profile that differ in one setting (for example
``--set model.summarizer_dtype=bfloat16``, a faster precision), judged by notebook 05's audit and the paired
tests over the same users, before a profile adopts the setting (issue 25: "let the audit and the paired tests
judge what it changes"). docs/methods.md shows it on course-long.

``python -m trsr_utils judge RUN_A RUN_B [--to PAGE.md]``: A is the reference, B the candidate. It reads only what
the runs stored (each run's manifest, 03/04's summaries and call counts, 05's per-user audit and predictiveness,
07's ranks, 08's recorded controls): nothing is recomputed, so it costs seconds.

- **Summaries**: how many users' final summaries are identical; the summarizer's seconds per LLM call.
- **Audit** (notebook 05): each measure per method, paired over users (permutation test, Holm over the family).
- **Predictiveness** (05): each query's Recall@10 over the same users, paired.
- **Ranking** (07): every system both runs scored, paired over the test users, with a TOST at the profile's
  ``eval.equivalence_margin``. A system whose inputs the setting does not touch (e.g. TALLRec, which reads no
  summary, when only the summarizer changed) is the negative control: its ranks must be equal.
- **Findings** (08): the summary's effect and each control, as each run decided them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.method import metrics, significance
from trsr_utils.tools.results_page import flat

AUDIT_MEASURES = ("coverage", "faithfulness", "named", "invented")
NOTEBOOK_STAGES = {"03_hierarchical": "hierarchical", "04_recurrent": "recurrent"}
# Settings that change only what the summarizer writes: when every differing setting is one of these, the rows that
# read no summary (TALLRec) are the negative control.
SUMMARIZER_SIDE = ("model.summarizer", "summary.", "chunking.")


class Run:
    """What one run stored: its manifest (settings, per-notebook seconds) and the folder of each stage it made."""

    def __init__(self, path: str | Path):
        path = Path(path)
        manifest = path if path.name == "manifest.json" else path / "manifest.json"
        if not manifest.exists() and (path / "variants").is_dir():
            found = sorted((path / "variants").glob("*/manifest.json"))
            if len(found) != 1:
                raise FileNotFoundError(f"{path} has no manifest.json and {len(found)} variants "
                                        f"({', '.join(str(f.parent) for f in found)}): name one")
            manifest = found[0]
        if not manifest.exists():
            raise FileNotFoundError(f"no manifest.json in {path}: is it a run directory?")
        self.manifest_path = manifest
        self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        self.name = str(path)
        # A stage folder as the manifest names it, or under this directory (a run copied or moved elsewhere).
        root = manifest.parent.parent.parent if manifest.parent.parent.name == "variants" else manifest.parent
        self.folders = {}
        for stage, rec in self.manifest.get("stages", {}).items():
            named = Path(rec["folder"])
            self.folders[stage] = named if named.is_dir() else root / stage / named.name

    def folder(self, stage: str) -> Path:
        if stage not in self.folders or not self.folders[stage].is_dir():
            raise FileNotFoundError(f"{self.name}: no result of stage {stage} (run its notebook first)")
        return self.folders[stage]

    def has(self, stage: str) -> bool:
        return stage in self.folders and self.folders[stage].is_dir()

    def results(self, notebook: str) -> dict[str, Any]:
        path = self.manifest_path.parent / "results" / f"{notebook}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def seconds(self) -> dict[str, float]:
        """The seconds each notebook took in this run's last pass (with whatever it found in its caches)."""
        return {Path(nb["notebook"]).stem: nb.get("seconds") for nb in self.manifest.get("notebooks", [])}


def setting_differences(a: Run, b: Run) -> pd.DataFrame:
    """The configuration values that differ between the runs (their run directories aside)."""
    fa, fb = flat(a.manifest.get("config", {})), flat(b.manifest.get("config", {}))
    keys = sorted(k for k in set(fa) | set(fb) if k != "run_dir" and fa.get(k) != fb.get(k))
    # str(): None (a setting left to its default, e.g. summarizer_dtype None = model.dtype) stays visible
    return pd.DataFrame([{"setting": k, "A": str(fa.get(k)), "B": str(fb.get(k))} for k in keys],
                        columns=["setting", "A", "B"])


def summaries(a: Run, b: Run) -> pd.DataFrame:
    """Per summary method: users, how many final summaries are identical, and the summarizer's new calls and
    seconds per new call in each run (from 03/04's meta)."""
    rows = []
    for stage, method in NOTEBOOK_STAGES.items():
        if not (a.has(stage) and b.has(stage)):
            continue
        sa = pd.read_parquet(a.folder(stage) / "summaries.parquet").set_index("user_id")["summary"]
        sb = pd.read_parquet(b.folder(stage) / "summaries.parquet").set_index("user_id")["summary"]
        users = sa.index.intersection(sb.index)
        row: dict[str, Any] = {"method": method, "users": len(users),
                               "identical": int((sa.loc[users] == sb.loc[users]).sum())}
        for side, run in (("A", a), ("B", b)):
            meta = json.loads((run.folder(stage) / "meta.json").read_text())
            calls = meta.get("cache_misses") or 0
            row[f"new_calls_{side}"] = calls
            row[f"s_per_call_{side}"] = meta["generation_seconds"] / calls if calls else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _holm_over_moved(table: pd.DataFrame) -> pd.DataFrame:
    """Holm over the rows whose per-user values moved at all (``moved``); a row no user moved in (a system or
    measure the setting cannot reach) is not a test and does not dilute the family: its p_holm is 1."""
    table["p_holm"] = 1.0
    if table["moved"].any():
        table.loc[table["moved"], "p_holm"] = significance.holm(table.loc[table["moved"], "p"])
    table["differs"] = table["p_holm"] < significance.ALPHA
    return table


def _paired(frame_a: pd.DataFrame, frame_b: pd.DataFrame, keys: Sequence[str], value: str,
            n_resamples: int = 9999) -> pd.DataFrame:
    """Paired tests of ``value`` per group of ``keys`` over the users both frames have, Holm over the groups
    that moved."""
    rows = []
    for group, ga in frame_a.groupby(list(keys), sort=False):
        group = group if isinstance(group, tuple) else (group,)
        gb = frame_b
        for k, v in zip(keys, group):
            gb = gb[gb[k] == v]
        va = ga.dropna(subset=[value]).set_index("user_id")[value]
        vb = gb.dropna(subset=[value]).set_index("user_id")[value]
        users = va.index.intersection(vb.index)
        if len(users) < 2:
            continue
        x, y = va.loc[users].to_numpy(float), vb.loc[users].to_numpy(float)
        test = significance.paired_difference(y, x, n_resamples)
        rows.append({**dict(zip(keys, group)), "users": len(users), "A": float(x.mean()), "B": float(y.mean()),
                     "diff": test["diff"], "p": test["p"], "moved": bool((x != y).any())})
    table = pd.DataFrame(rows)
    return _holm_over_moved(table) if len(table) else table


def audit(a: Run, b: Run, n_resamples: int = 9999) -> pd.DataFrame:
    """05's audit measures per method, B - A paired over users (Holm over the methods x measures that moved)."""
    ta, tb = (pd.read_parquet(r.folder("05_compare") / "audit.parquet") for r in (a, b))
    long = [t.melt(id_vars=["method", "user_id"], value_vars=list(AUDIT_MEASURES), var_name="measure")
            for t in (ta, tb)]
    return _paired(long[0], long[1], ["method", "measure"], "value", n_resamples)


def predictiveness(a: Run, b: Run, n_resamples: int = 9999) -> pd.DataFrame:
    """05's summary-as-a-query Recall@10 per query, B - A paired over users."""
    ta, tb = (pd.read_parquet(r.folder("05_compare") / "predictiveness.parquet") for r in (a, b))
    for t in (ta, tb):
        t["recall@10"] = metrics.per_user(t["rank"], "recall@10")
    return _paired(ta, tb, ["system"], "recall@10", n_resamples)


def ranking(a: Run, b: Run, margin: float, metric: str = "recall@10", n_resamples: int = 9999) -> pd.DataFrame:
    """07's systems scored in both runs: B - A paired over the test users (Holm over the systems whose ranks
    moved), a TOST at ``margin`` and the decision sentence; ``moved`` is False where every user's rank is equal."""
    ra, rb = (pd.read_parquet(r.folder("07_eval") / "ranks.parquet") for r in (a, b))

    def per_user(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Each user's metric, averaged over SFT seeds where a row has several (as notebook 07 compares them), and
        each user's ranks as a tuple over the seeds (to say whether any moved)."""
        order = ["user_id", "seed"] if "seed" in frame else ["user_id"]
        frame = frame.sort_values(order)
        ranks = frame.set_index("user_id")["rank"]
        return significance.user_values(ranks, metric), ranks.groupby(level=0).agg(tuple)

    rows, values = [], {}
    for s in [s for s in ra["system"].unique() if s in set(rb["system"])]:
        (va, ka), (vb, kb) = per_user(ra[ra["system"] == s]), per_user(rb[rb["system"] == s])
        if set(va.index) != set(vb.index):
            raise ValueError(f"{s}: the runs ranked different users; a paired test needs the same users")
        vb, kb = vb.reindex(va.index), kb.reindex(va.index)
        changed = int((ka != kb).sum())
        test = significance.paired_difference(vb.to_numpy(), va.to_numpy(), n_resamples)
        values[s] = (va.to_numpy(), vb.to_numpy())
        rows.append({"system": s, "users": len(va), "A": float(va.mean()), "B": float(vb.mean()), "diff": test["diff"],
                     "p": test["p"], "moved": changed > 0, "users_rank_changed": changed})
    if not rows:
        return pd.DataFrame()
    table = _holm_over_moved(pd.DataFrame(rows))
    tosts = [significance.equivalence(values[s][1], values[s][0], margin) for s in table["system"]]
    table["tost_p"] = [t["p"] for t in tosts]
    table["decision"] = [significance.decision(dict(row), t, metric) for (_, row), t in zip(table.iterrows(), tosts)]
    return table


def findings(a: Run, b: Run) -> pd.DataFrame:
    """08's recorded answers side by side: the summary's effect per method and each control's difference."""
    ra, rb = a.results("08_ablations"), b.results("08_ablations")
    rows = []
    for method in sorted(set(ra.get("summary_effect", {})) & set(rb.get("summary_effect", {}))):
        ea, eb = ra["summary_effect"][method], rb["summary_effect"][method]
        rows.append({"finding": f"summary effect over TALLRec: {method}", "A": ea["diff"], "Holm p A": ea["p_holm"],
                     "B": eb["diff"], "Holm p B": eb["p_holm"], "A says": ea["decision"].split(":")[0],
                     "B says": eb["decision"].split(":")[0]})
    for name in [c for c in ra.get("controls", {}) if c in rb.get("controls", {})]:
        ca, cb = ra["controls"][name], rb["controls"][name]
        say = lambda c: "differs" if c["significant"] else "not shown"  # noqa: E731
        rows.append({"finding": name, "A": ca["diff"], "Holm p A": ca["p_holm"], "B": cb["diff"],
                     "Holm p B": cb["p_holm"], "A says": say(ca), "B says": say(cb)})
    return pd.DataFrame(rows)


def times(a: Run, b: Run) -> pd.DataFrame:
    sa, sb = a.seconds(), b.seconds()
    rows = [{"notebook": nb, "A": sa.get(nb), "B": sb.get(nb)} for nb in sorted(set(sa) | set(sb))]
    table = pd.DataFrame(rows, columns=["notebook", "A", "B"])
    if len(table):
        table.loc[len(table)] = {"notebook": "all", "A": table["A"].sum(min_count=1), "B": table["B"].sum(min_count=1)}
    return table


def judge(a: Run, b: Run, margin: float | None = None, n_resamples: int = 9999) -> dict[str, pd.DataFrame]:
    """Every comparison both runs have results for (a stage either run lacks is left out); ``n_resamples`` for
    the permutation tests and bootstrap intervals."""
    margin = margin or flat(a.manifest.get("config", {})).get("eval.equivalence_margin") or 0.05
    out = {"settings": setting_differences(a, b), "summaries": summaries(a, b), "times": times(a, b)}
    missing = []
    for stage, what in (("05_compare", "audit and summary-as-query"), ("07_eval", "ranking")):
        lacking = [r.name for r in (a, b) if not r.has(stage)]
        if lacking:
            missing.append({"comparison": what, "why": f"no {stage} result in {', '.join(lacking)}"})
        elif stage == "05_compare":
            out["audit"], out["predictiveness"] = audit(a, b, n_resamples), predictiveness(a, b, n_resamples)
        else:
            out["ranking"] = ranking(a, b, margin, n_resamples=n_resamples)
    out["findings"] = findings(a, b)
    out["not_compared"] = pd.DataFrame(missing, columns=["comparison", "why"])
    return out


def negative_controls(settings: pd.DataFrame) -> list[str]:
    """The 07 rows that must not move: those that read no summary, when every differing setting is on the
    summarizer's side (a change of the recommender or its scoring moves them too, so then there are none)."""
    if len(settings) and all(str(k).startswith(SUMMARIZER_SIDE) for k in settings["setting"]):
        return [row for row, method in LLM_ROWS.items() if method == "none"]
    return []


def reading(tables: Mapping[str, pd.DataFrame], no_summary: Sequence[str] | None = None) -> list[str]:
    """Plain sentences derived from the tables: what the change did to the summaries, the audit, the rankings
    (with the negative control: by default :func:`negative_controls` of the differing settings) and the findings."""
    if no_summary is None:
        no_summary = negative_controls(tables.get("settings", pd.DataFrame(columns=["setting"])))
    out = [f"Not compared: {r['comparison']} ({r['why']})." for _, r in
           tables.get("not_compared", pd.DataFrame(columns=["comparison", "why"])).iterrows()]
    s = tables.get("summaries", pd.DataFrame())
    for _, r in s.iterrows():
        speed = (f"; {r['s_per_call_A']:.2f} s per new LLM call in A ({r['new_calls_A']} new calls), "
                 f"{r['s_per_call_B']:.2f} in B ({r['new_calls_B']})"
                 if np.isfinite(r["s_per_call_A"]) and np.isfinite(r["s_per_call_B"]) else "")
        out.append(f"{r['method']}: {r['identical']} of {r['users']} users' final summaries are identical{speed}.")
    for name, label in (("audit", "audit measures"), ("predictiveness", "summary-as-query Recall@10 values")):
        t = tables.get(name)
        if t is not None and len(t):
            moved = t[t["differs"]]
            what = ", ".join(f"{' '.join(str(r[k]) for k in t.columns[:t.columns.get_loc('users')])} "
                             f"({r['diff']:+.3f}, Holm p {r['p_holm']:.3f})" for _, r in moved.iterrows())
            out.append(f"{len(moved)} of the {int(t['moved'].sum())} {label} that moved at all differ between A and "
                       f"B after Holm ({int((~t['moved']).sum())} are equal for every user)"
                       + (f": {what}." if len(moved) else f"; smallest Holm p {t['p_holm'].min():.3f}."))
    t = tables.get("ranking")
    if t is not None and len(t):
        for _, r in t[t["system"].isin(no_summary)].iterrows():
            out.append(f"Negative control ({r['system']}, reads no summary, and only the summarizer's settings "
                       "differ): " + ("every user's rank is the same in both runs." if not r["moved"] else
                                      f"{r['users_rank_changed']} users' ranks changed: something besides the "
                                      "summaries differs between the runs."))
        rest = t[~t["system"].isin(no_summary)]
        same = rest[~rest["moved"]]
        if len(same):
            out.append(f"Every user's rank is the same in both runs for {len(same)} of {len(rest)} other systems: "
                       + ", ".join(same["system"]) + ".")
        for _, r in rest[rest["moved"]].iterrows():
            out.append(f"{r['system']} ({r['users_rank_changed']} of {r['users']} users' ranks changed; Holm p "
                       f"{r['p_holm']:.3f} over the {int(t['moved'].sum())} systems that moved), B - A: "
                       f"{r['decision']}.")
    f = tables.get("findings")
    if f is not None and len(f):
        same = f[f["A says"] == f["B says"]]
        out.append(f"{len(same)} of {len(f)} of notebook 08's findings get the same answer in both runs"
                   + ("." if len(same) == len(f) else ": not " + ", ".join(f[f["A says"] != f["B says"]]["finding"])
                      + "."))
    return out


def page(a: Run, b: Run, tables: Mapping[str, pd.DataFrame]) -> str:
    """The judgement as Markdown: the readings, then every table."""
    parts = [f"# Judging one setting: B against A\n\nA (reference): `{a.name}`; B: `{b.name}`. Written by "
             "`python -m trsr_utils judge` from what the two runs stored.\n", "## Reading\n",
             "\n".join(f"- {line}" for line in reading(tables)) + "\n"]
    titles = {"settings": "Settings that differ", "times": "Seconds per notebook",
              "summaries": "Summaries (03/04)", "audit": "Audit (05), B - A paired over users",
              "predictiveness": "Summary as a query (05), Recall@10", "ranking": "Ranking (07), Recall@10",
              "findings": "Notebook 08's findings in each run"}
    for key, title in titles.items():
        if key in tables and len(tables[key]):
            note = ("\nEach run's last pass, with whatever it found in its caches (03/04's LLM calls, stored "
                    "adapters and scores): compare runs made from scratch.\n" if key == "times" else "")
            parts.append(f"## {title}\n\n{tables[key].to_markdown(index=False, floatfmt='.4g')}\n{note}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", help="the reference run directory (or its manifest.json)")
    parser.add_argument("run_b", help="the run with the changed setting")
    parser.add_argument("--to", default=None, help="write the judgement as Markdown here (default: print it)")
    parser.add_argument("--margin", type=float, default=None, help="TOST margin (default eval.equivalence_margin)")
    args = parser.parse_args(argv)
    a, b = Run(args.run_a), Run(args.run_b)
    text = page(a, b, judge(a, b, args.margin))
    if args.to:
        Path(args.to).write_text(text)
        print(f"wrote {args.to}")
    else:
        print(text)
    return 0
