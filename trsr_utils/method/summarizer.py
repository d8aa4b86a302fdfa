"""Preference summaries from a frozen LLM: hierarchical and recurrent (notebooks 03-05).

* **hierarchical**: every block of every user is summarised (all in batches),
  then summaries are merged ``merge_fan_in`` at a time, level by level, until
  each user has one. Every intermediate summary is kept.
* **recurrent**: step 0 summarises block 0 (the very prompt the hierarchical
  method uses, so a shared cache answers it for free); step k gives the LLM
  the summary so far and block k. Steps run for all users at once
  (step-synchronous), so each step is one batched pass.
* **template**: no LLM: the user's most frequent genres/categories with
  counts and what the most recent block adds. The baseline that tells whether
  an LLM summary adds anything.

Every LLM call goes through the run's call cache (:mod:`trsr_utils.store.callcache`), an SQLite file in the run
directory keyed by (model id, exact prompt text, generation parameters) and
committed after each batch, so a notebook re-run costs nothing for finished
calls and a run killed at any moment resumes where it stopped.

A generation is checked before it becomes a summary (:func:`clean_summary`):
an unfinished last sentence is dropped, a repeated sentence is removed, and
an empty answer, an answer with no complete sentence, or one looping on a
phrase is *degenerate*. Degenerate calls are retried once with a stated
fallback setting (repetition penalty, no repeated 3-grams, 1.5x the tokens);
what is still degenerate is replaced by the template summary of the same
items and flagged ``fallback``. Nothing degenerate is passed on silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from trsr_utils.method import llm, prompts, summary_checks, text
from trsr_utils.method.generation import LLMCaller, generation_params
from trsr_utils.method.compare import jaccard
from trsr_utils.method.summary_checks import Cleaned, clean_summary
from trsr_utils.method.text import category_counts
from trsr_utils.store.callcache import Call, open_cache

FORMAT_VERSION = 1  # of the summary stages' files (meta.json)


# ----------------------------------------------------------------- the template summary (no LLM)
def _counted(counts: Counter, k: int) -> str:
    parts = [f"{name} ({n})" for name, n in counts.most_common(k)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class TemplateSummarizer:
    """Rule-based summary: the most frequent categories with counts, and what the latest items add."""

    def __init__(self, catalog: Mapping[str, Mapping[str, str]], domain: str, top: int = 3):
        self.catalog, self.top = catalog, top
        self.items = prompts.DOMAINS[domain]["items"]

    def categories(self, item_ids: Sequence[str]) -> Counter:
        return category_counts(item_ids, self.catalog)

    def __call__(self, item_ids: Sequence[str], recent_ids: Sequence[str] = ()) -> str:
        counts = self.categories(item_ids)
        if not counts:
            return f"{prompts.SUMMARY_OPENING} has {len(item_ids)} {self.items} with no category information."
        text = f"{prompts.SUMMARY_OPENING} most often chose {_counted(counts, self.top)} {self.items}."
        # "Most recently" only says something when the recent items are not all the items.
        recent = self.categories(recent_ids) if set(recent_ids) != set(item_ids) else Counter()
        if recent:
            earlier = counts - recent
            new = [c for c in recent if c not in earlier]
            text += f" Most recently: {_counted(recent, 2)}"
            text += f", new for them: {', '.join(sorted(new)[:3])}." if new and earlier else "."
        return text


# ----------------------------------------------------------------- one round of calls with checks
@dataclass
class Request:
    """One summarization call to make: its prompt and the items the result covers."""

    user_id: str
    level: int  # hierarchical: merge level (0 = blocks); recurrent: step
    index: int  # position within the level
    prompt: str
    item_ids: list[str]
    recent_ids: list[str]  # for the template fallback: the newest block among item_ids
    inputs: list[str] = field(default_factory=list)  # the summaries a merge or update starts from


def _judge(text: str, request: Request, cfg: Any, domain: str,
           line_of: Mapping[str, str]) -> tuple[Cleaned, list[str]]:
    """A generation cleaned and checked: degenerate (``problem`` set), or usable with the marked checks it fails."""
    cleaned = clean_summary(text, cfg.summary.max_sentences)
    if cleaned.problem:
        return cleaned, []
    failed = summary_checks.check(cleaned.text, [line_of[i] for i in request.item_ids if i in line_of], domain,
                                  request.inputs)
    degenerate = [f for f in failed if f in summary_checks.DEGENERATE]
    if degenerate:
        return Cleaned("", degenerate[0], cleaned.edits), []
    return cleaned, failed


def _run(requests: list[Request], caller: LLMCaller, cfg: Any, template: TemplateSummarizer,
         desc: str, domain: str, line_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """Call, check, retry degenerate calls once, fall back to the template; one step row per request."""
    first = caller([r.prompt for r in requests], generation_params(cfg), desc=desc)
    judged = [_judge(c.text, r, cfg, domain, line_of) for c, r in zip(first, requests)]
    bad = [i for i, (c, _) in enumerate(judged) if c.problem]
    second: dict[int, tuple[Call, tuple[Cleaned, list[str]]]] = {}
    if bad:
        calls = caller([requests[i].prompt for i in bad], generation_params(cfg, retry=True),
                       desc=f"{desc} (retries)")
        for i, c in zip(bad, calls):
            second[i] = (c, _judge(c.text, requests[i], cfg, domain, line_of))
    rows = []
    for i, (r, c, (cl, _)) in enumerate(zip(requests, first, judged)):
        used_calls = [c] + ([second[i][0]] if i in second else [])
        final, marked = second[i][1] if i in second else judged[i]
        if final.problem:
            summary, flag, marked = template(r.item_ids, r.recent_ids), "fallback", []
        else:
            summary, flag = final.text, ("retried" if i in second else "")
        rows.append({
            "user_id": r.user_id, "level": r.level, "index": r.index, "item_ids": r.item_ids,
            "recent_ids": r.recent_ids,
            "first_raw": prompts.SUMMARY_OPENING + c.text,  # what ``problem`` judged
            "raw": prompts.SUMMARY_OPENING + used_calls[-1].text, "summary": summary, "flag": flag,
            "problem": cl.problem, "retry_problem": second[i][1][0].problem if i in second else "",
            "checks": ",".join(marked),
            "edits": ",".join(final.edits), "finish": used_calls[-1].finish, "calls": len(used_calls),
            "prompt_tokens": sum(x.prompt_tokens for x in used_calls),
            "new_tokens": sum(x.new_tokens for x in used_calls),
            "seconds": sum(x.seconds for x in used_calls), "cached": all(x.cached for x in used_calls),
        })
    return rows


@dataclass
class Summary:
    """One summary as it is passed on, with the items it covers (what its checks and fallback need)."""

    text: str
    item_ids: list[str]
    recent_ids: list[str]  # the newest block among item_ids (what the template fallback stresses)
    flag: str = ""  # "", "retried" or "fallback"


class Asker:
    """One checked summarization call at a time: the building block of the loops notebooks 03 and 04 write out.

    ``ask(prompt, item_ids, recent_ids, inputs)`` does for one prompt exactly what the batched stage does for
    each of its calls: the cached LLM call, cleaning and checks, one retry of a degenerate answer, the template
    summary as the last resort. It shares the run directory's call cache, so a prompt the stage already sent
    costs nothing (``hits``/``misses`` count them).
    """

    def __init__(self, cfg: Any, blocks: Any, catalog: Mapping[str, Mapping[str, str]], model: Any = None,
                 tokenizer: Any = None):
        name = cfg.model.summarizer
        self.cfg, self.domain = cfg, text.domain_of(cfg)
        self.tokenizer = tokenizer if tokenizer is not None else llm.load_tokenizer(name)
        dtype, quantization = cfg.model.precision("summarizer")
        # Loaded at the first call the cache does not hold (llm.Lazy): none, when the stage already ran.
        self.model = model if model is not None else llm.lazy_model(name, dtype, quantization, cfg.model.device)
        self.model_id = llm.model_id(name, dtype, quantization)
        self.template = TemplateSummarizer(catalog, self.domain)
        self.line_of = _lines(blocks)
        self.hits = self.misses = 0

    def __call__(self, prompt: str, item_ids: Sequence[str], recent_ids: Sequence[str],
                 inputs: Sequence[str] = ()) -> Summary:
        cache = open_cache(self.cfg)
        try:
            caller = LLMCaller(self.model, self.tokenizer, self.model_id, cache, 1, self.cfg.seed, quiet=True)
            request = Request("", 0, 0, prompt, list(item_ids), list(recent_ids), list(inputs))
            (row,) = _run([request], caller, self.cfg, self.template, "one call", self.domain, self.line_of)
        finally:
            cache.close()
        self.hits += caller.stats.hits
        self.misses += caller.stats.misses
        return Summary(row["summary"], list(item_ids), list(recent_ids), row["flag"])


def _lines(blocks: Any) -> dict[str, str]:
    """item id -> its line as the summarizer read it (what a quoted title is checked against)."""
    return {i: line for ids, lines in zip(blocks["item_ids"], blocks["lines"]) for i, line in zip(ids, lines)}


def _user_blocks(blocks: Any) -> dict[str, list[Any]]:
    by_user: dict[str, list[Any]] = {}
    for row in blocks.sort_values(["user_id", "block"]).itertuples(index=False):
        by_user.setdefault(row.user_id, []).append(row)
    return by_user


def hierarchical(blocks: Any, caller: LLMCaller, cfg: Any, template: TemplateSummarizer,
                 domain: str) -> Any:
    """All intermediate summaries of the hierarchical method (steps frame; each user's last level is the summary)."""
    import pandas as pd

    tok, fan_in = caller.tokenizer, cfg.summary.merge_fan_in
    by_user = _user_blocks(blocks)
    line_of = _lines(blocks)
    requests = [Request(u, 0, b.block, prompts.generation_prompt(tok, prompts.block_summary_messages(
                        list(b.lines), domain)), list(b.item_ids), list(b.item_ids))
                for u, bs in by_user.items() for b in bs]
    rows = _run(requests, caller, cfg, template, "hierarchical: blocks", domain, line_of)
    current: dict[str, list[dict[str, Any]]] = {u: [] for u in by_user}
    for r in rows:
        current[r["user_id"]].append(r)
    level = 0
    while any(len(parts) > 1 for parts in current.values()):
        level += 1
        # Chronological groups of fan_in summaries; a group of one is carried up unchanged (no call).
        groups = {u: [parts[i:i + fan_in] for i in range(0, len(parts), fan_in)]
                  for u, parts in current.items() if len(parts) > 1}
        merges = [Request(u, level, g, prompts.generation_prompt(tok, prompts.merge_messages(
                          [r["summary"] for r in group], domain)),
                          [i for r in group for i in r["item_ids"]], group[-1]["recent_ids"],
                          [r["summary"] for r in group])
                  for u, user_groups in groups.items() for g, group in enumerate(user_groups) if len(group) > 1]
        merged = {(r["user_id"], r["index"]): r
                  for r in _run(merges, caller, cfg, template, f"hierarchical: merge level {level}", domain,
                                line_of)}
        rows += merged.values()
        for u, user_groups in groups.items():
            current[u] = [merged.get((u, g), group[0]) for g, group in enumerate(user_groups)]
    return _finish_steps(pd.DataFrame(rows), blocks, "hierarchical")


def recurrent(blocks: Any, caller: LLMCaller, cfg: Any, template: TemplateSummarizer, domain: str) -> Any:
    """Every step of the recurrent method (steps frame; each user's last step is the summary)."""
    import pandas as pd

    tok = caller.tokenizer
    by_user = _user_blocks(blocks)
    line_of = _lines(blocks)
    rows: list[dict[str, Any]] = []
    previous: dict[str, dict[str, Any]] = {}
    for step in range(max(len(bs) for bs in by_user.values())):
        requests = []
        for u, bs in by_user.items():
            if step >= len(bs):
                continue
            b = bs[step]
            if step == 0:  # the same prompt as hierarchical block 0: a cache hit when 03 ran first
                messages = prompts.block_summary_messages(list(b.lines), domain)
                items, inputs = list(b.item_ids), []
            else:
                messages = prompts.recurrent_messages(previous[u]["summary"], list(b.lines), domain)
                items, inputs = list(previous[u]["item_ids"]) + list(b.item_ids), [previous[u]["summary"]]
            requests.append(Request(u, step, 0, prompts.generation_prompt(tok, messages), items, list(b.item_ids),
                                    inputs))
        step_rows = _run(requests, caller, cfg, template, f"recurrent: step {step}", domain, line_of)
        for r in step_rows:
            previous[r["user_id"]] = r
        rows += step_rows
    return _finish_steps(pd.DataFrame(rows), blocks, "recurrent")


def _finish_steps(steps: Any, blocks: Any, method: str) -> Any:
    split_of = dict(zip(blocks["user_id"], blocks["split"]))
    steps.insert(1, "split", steps["user_id"].map(split_of))
    steps.insert(2, "method", method)
    steps = steps.drop(columns=["recent_ids"])
    return steps.sort_values(["user_id", "level", "index"], kind="stable").reset_index(drop=True)


def final_summaries(steps: Any, blocks: Any) -> Any:
    """One row per user: the last step's summary, the number of blocks, and the cost over all steps."""
    import pandas as pd

    last = steps.groupby("user_id", sort=False).tail(1).set_index("user_id")
    agg = steps.groupby("user_id").agg(
        calls=("calls", "sum"), prompt_tokens=("prompt_tokens", "sum"), new_tokens=("new_tokens", "sum"),
        seconds=("seconds", "sum"), steps=("level", "size"),
        retried=("flag", lambda f: int((f == "retried").sum())),
        fallbacks=("flag", lambda f: int((f == "fallback").sum())))
    n_blocks = blocks.groupby("user_id").size().rename("n_blocks")
    n_items = blocks.groupby("user_id")["n_items"].sum().rename("n_items")
    out = pd.DataFrame({"split": last["split"], "summary": last["summary"], "flag": last["flag"],
                        "checks": last["checks"]}).join(
        agg).join(n_blocks).join(n_items)
    out["llm_tokens"] = out["prompt_tokens"] + out["new_tokens"]
    return out.reset_index()


def template_summaries(blocks: Any, template: TemplateSummarizer) -> Any:
    """The no-LLM baseline summary for every user."""
    import pandas as pd

    rows = []
    for u, bs in _user_blocks(blocks).items():
        items = [i for b in bs for i in b.item_ids]
        rows.append({"user_id": u, "split": bs[0].split, "summary": template(items, list(bs[-1].item_ids))})
    return pd.DataFrame(rows)


def step_kind(steps: Any) -> Any:
    """Each step's one kind, the first that applies: fallback (template), retried, kept but flagged, trimmed or
    deduplicated, passed the checks (which do not compare genres with the history: notebook 05's audit does)."""
    import numpy as np

    conditions = [steps["flag"] == "fallback", steps["flag"] == "retried", steps["checks"] != "",
                  steps["edits"] != ""]
    return np.select(conditions, EXAMPLE_KINDS[:4], default=EXAMPLE_KINDS[4])


EXAMPLE_KINDS = ("fallback (template)", "retried", "kept but flagged", "trimmed or deduplicated", "passed the checks")


def examples(steps: Any, per_kind: int = 2, seed: int = 0) -> Any:
    """A few steps of each kind (each step in one kind only, :func:`step_kind`), for honest show-and-tell. The
    first attempt is shown with the problem found in it; ``raw`` is the attempt the summary came from."""
    import pandas as pd

    kinds = pd.Series(step_kind(steps), index=steps.index)
    parts = []
    for kind in reversed(EXAMPLE_KINDS):  # the ones that passed first
        chosen = steps[kinds == kind]
        chosen = chosen.sample(min(per_kind, len(chosen)), random_state=seed) if len(chosen) else chosen
        parts.append(chosen.assign(kind=kind))
    out = pd.concat(parts)
    out = out.assign(first_attempt=out["first_raw"], raw=out["raw"].where(out["calls"] > 1, ""))
    cols = ["kind", "user_id", "level", "index", "first_attempt", "problem", "raw", "retry_problem", "checks",
            "edits", "summary"]
    return out[cols].rename(columns={"raw": "retry"}).reset_index(drop=True)


def update_uptake(steps: Any) -> Any:
    """Recurrent steps k >= 1: did the update change the summary, and how much (content-word Jaccard with step k-1)?"""
    import pandas as pd

    rows = []
    for user, mine in steps.sort_values(["user_id", "level"]).groupby("user_id", sort=False):
        texts = mine["summary"].tolist()
        for k in range(1, len(texts)):
            # word for word as the "unchanged" check compares (case and punctuation aside): one definition
            rows.append({"user_id": user, "step": k, "unchanged": summary_checks.unchanged(texts[k], [texts[k - 1]]),
                         "overlap_with_previous": jaccard(texts[k], texts[k - 1])})
    return pd.DataFrame(rows, columns=["user_id", "step", "unchanged", "overlap_with_previous"])


# ----------------------------------------------------------------- running a method and its outputs
def degeneracy_report(steps: Any) -> dict[str, Any]:
    """How often a first attempt was degenerate, and what the retry achieved."""
    n = len(steps)
    problems = steps["problem"].value_counts().to_dict()
    problems.pop("", None)
    return {
        "calls": int(n),
        "degenerate_first": int((steps["problem"] != "").sum()),
        "degenerate_rate": float((steps["problem"] != "").mean()) if n else 0.0,
        "by_problem": {k: int(v) for k, v in problems.items()},
        "fixed_by_retry": int((steps["flag"] == "retried").sum()),
        "fallbacks": int((steps["flag"] == "fallback").sum()),
        "trimmed": int(steps["edits"].str.contains("trimmed").sum()),
        # kept but flagged (see trsr_utils.method.summary_checks): how often each marked check failed
        "flag_rates": {name: flag_share(steps["checks"], name) for name in summary_checks.MARKED},
    }


def later_unchanged(steps: Any) -> tuple[float, int]:
    """(share flagged unchanged, how many) of the merges or updates (level > 0): the only calls that have an input
    to return, so the share a reader compares with the final summaries' count (``flag_rates`` is over every call)."""
    later = steps[steps["level"] > 0]
    return flag_share(later["checks"], "unchanged"), len(later)


def flag_share(checks: Any, name: str) -> float:
    """The share of steps whose comma-separated ``checks`` include ``name`` (0 where there are no steps)."""
    return float(checks.fillna("").str.split(",").map(lambda c: name in c).mean()) if len(checks) else 0.0


def check_table(report: Mapping[str, Any], steps: Any = None) -> Any:
    """One row: the degeneracy counts, each degenerate problem's count and each kept-but-flagged check's rate,
    each column naming its denominator. With the run's ``steps``, "unchanged" is a share of the merges or updates
    (level > 0), the only calls that have an input to return: over every call it reads as a smaller, other number
    than the reading's count of final summaries."""
    import pandas as pd

    deg = dict(report["degeneracy"])
    by_problem, rates = deg.pop("by_problem"), deg.pop("flag_rates")
    # a percentage as the flag columns are (a raw 0.089912 beside "5.3%" reads as another kind of number)
    deg = {(f"degenerate_rate (of {deg['calls']} calls)" if k == "degenerate_rate" else k):
           (f"{v:.1%}" if k == "degenerate_rate" else v) for k, v in deg.items()}
    flagged = {}
    for k, v in rates.items():
        if k == "unchanged" and steps is not None:
            share, n = later_unchanged(steps)
            kind = "merges" if report.get("method") == "hierarchical" else "updates"
            flagged[f"flagged: unchanged (of {n} {kind})"] = f"{share:.1%}"
        else:
            flagged[f"flagged: {k} (of {deg['calls']} calls)"] = f"{v:.1%}"
    return pd.DataFrame([{**deg, **{f"problem: {k}": v for k, v in by_problem.items()}, **flagged}])


def copied_inputs(same: Any, steps: Any, first_block: int) -> str:
    """Which input of the final merge each unchanged final hierarchical summary (``same``: user_id, summary) is:
    the oldest (the newest items lost) or the newest (the oldest lost). ``first_block``: how many are the first
    block's summary itself, said where the final merge's inputs are merges (only its oldest items kept)."""
    top = steps.groupby("user_id")["level"].transform("max")
    inputs = steps[steps["level"] == top - 1].sort_values(["user_id", "index"]).groupby("user_id")["summary"]
    inputs = inputs.agg(list)
    where = {"oldest": 0, "newest": 0, "middle": 0, "none": 0}
    for user, text in zip(same["user_id"], same["summary"]):
        # word for word as the "unchanged" check compares (summary_checks.words: case and punctuation aside)
        texts = [summary_checks.words(t) for t in inputs.get(user, [])]
        mine = summary_checks.words(text)
        at = texts.index(mine) if mine in texts else None
        where["none" if at is None else "oldest" if at == 0 else "newest" if at == len(texts) - 1 else "middle"] += 1

    def are(n: int) -> str:
        return f"{n} {'is' if n == 1 else 'are'}"

    line = (f"Of those {len(same)}, {are(where['oldest'])} word for word the final merge's oldest input (for them "
            f"the newest items are the ones lost) and {where['newest']} its newest (the older items lost)")
    if where["middle"]:
        line += f"; {are(where['middle'])} a middle input"
    if where["none"]:  # cannot happen while the flag and this count compare alike; said, not hidden, if it does
        line += f"; {where['none']} match none of the final merge's inputs"
    if int(steps["level"].max()) > 1 and first_block:  # with merges of merges, the oldest input covers many blocks
        line += f". {are(first_block)} the first block's summary itself: only the oldest block's items are kept"
    return line + "."


def reading(report: Mapping[str, Any], summaries: Any, steps: Any = None) -> list[str]:
    """What a summarization run shows, in sentences computed from its report and final summaries; with the run's
    ``steps``, which input each unchanged final summary copies (hierarchical: the final merge's oldest or newest
    input, and how many are the first block's summary alone; recurrent: how many are still the first block's)."""
    deg, users = report["degeneracy"], len(summaries)
    fallback_users = int((summaries["flag"] == "fallback").sum())
    out = [f"{deg['degenerate_first']} of {deg['calls']} first attempts ({deg['degenerate_rate']:.1%}) were degenerate; "
           f"the retry fixed {deg['fixed_by_retry']}, and {deg['fallbacks']} became the template summary."
           + (f" For {fallback_users} of {users} users the final summary is the template's, not the LLM's."
              if fallback_users else "")]
    checks = summaries["checks"].fillna("") if "checks" in summaries else None
    if checks is not None:
        kept = {c: int(checks.str.contains(c).sum()) for c in summary_checks.MARKED}
        what = {"unknown_title": "quote a title found in none of their items",
                "prompt_copy": "repeat the prompt's own wording",
                "unchanged": ("are a merge that returned one of its inputs word for word, ignoring what the others "
                              "said" if report["method"] == "hierarchical" else
                              "are an update that returned the previous summary unchanged, ignoring the new block")}
        out += [f"{n} of {users} final summaries {what[c]}." for c, n in kept.items() if n]
        copied = checks.str.contains("unchanged")
        if steps is not None and copied.any():
            same = summaries[copied]
            first = steps[(steps["level"] == 0) & (steps["index"] == 0)].set_index("user_id")["summary"]
            oldest = sum(summary_checks.unchanged(a, [b])  # as the flag compares: case and punctuation aside
                         for a, b in zip(same["summary"], first.reindex(same["user_id"]).fillna("")))
            if report["method"] == "hierarchical":
                out.append(copied_inputs(same, steps, oldest))
            else:  # every unchanged last update lost the newest block; these never took in any block after the first
                out.append(f"Of those {int(copied.sum())}, {oldest} {'is' if oldest == 1 else 'are'} still word for "
                           "word the first block's summary: "
                           "no update after it changed anything.")
    words = summaries["summary"].str.split().map(len)
    out.append(f"Final summaries have {words.mean():.0f} words on average ({words.min()}-{words.max()}); they are "
               "what the recommender reads, so their faults reach notebooks 06-08.")
    return out
