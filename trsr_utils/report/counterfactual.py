"""What if the summary said something else? A counterfactual summary widget (ipywidgets) over notebooks 07/08.

A student picks a test user, edits the preference summary (or takes another
user's, an empty one, or none at all) and presses *score*: every candidate's
p(yes) with the user's own summary and with the edited text, for the
fine-tuned and the zero-shot recommender side by side, and the positive's rank
(1 = best, ties against the positive) before and after. The prompts are built
and scored exactly as notebooks 07 and 08 score (:func:`scorer`), so the
own-summary column is the evaluation's number for that user (to float32
rounding: the evaluation pads several users into one batch, the widget
scores one).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines, stages
from trsr_utils.method import llm, metrics, prompts, scoring, user_prompts
from trsr_utils.stages import sft

# summary (None: no summary section), recent item lines, candidate lines (positive first) -> p(yes) per candidate
Scorer = Callable[[str | None, Sequence[str], Sequence[str]], np.ndarray]

_PANE = "border:1px solid #ccc;border-radius:4px;padding:6px;margin:2px;"
_CELL = "padding:2px 6px;border-bottom:1px solid #eee;"
_NOBODY = ""  # the "use the summary of" dropdown's placeholder (user ids are never empty)


class UserInput(NamedTuple):
    """What one test user's recommendation prompt shows, and the candidates' item ids (positive first)."""

    summary: str | None
    recent: list[str]
    candidates: list[str]
    candidate_ids: list[str]


def scorer(cfg: Any, model: Any, tokenizer: Any) -> Scorer:
    """p(yes) per candidate for one user's (summary, recent lines, candidate lines), positive first.

    The same calls as :func:`trsr_utils.stages.table_rows.score_prompts` (the prompt builder, the answer tokens after the
    first suffix, ``model.scoring_dtype``, shared-prefix scoring), so equal inputs give the evaluation's numbers.
    """
    prompter = prompts.RecommendationPrompter.from_config(cfg, tokenizer)
    # Cast once, not per click: for_scoring copies the whole model when scoring_dtype differs from its dtype.
    model = scoring.for_scoring(model, cfg.model.scoring_dtype)

    def score(summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        prompt = prompter.build(summary, recent, candidates)
        answer = prompts.answer_tokens(tokenizer, prompt.suffixes[0])
        return scoring.score_users(model, [prompt], answer, cfg.sft.score_batch_users,
                                   tokenizer.pad_token_id or 0)[0]

    return score


class _ZeroShot:
    """A scorer that runs the fine-tuned scorer's model with its LoRA adapter switched off.

    peft's ``disable_adapter()`` makes every LoRA layer return its base layer's output unchanged, so this equals
    the plain base model (tested) while keeping one copy of the weights in memory, not two.
    """

    def __init__(self, peft_model: Any, score: Scorer):
        self.peft_model, self.score = peft_model, score

    def __call__(self, summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        with self.peft_model.disable_adapter():
            return self.score(summary, recent, candidates)


def scorers_for(cfg: Any, base: Any, tokenizer: Any, adapter: str | Path) -> dict[str, Scorer]:
    """"fine-tuned" (``base`` with the LoRA adapter in ``adapter`` attached) and "zero-shot" (the same model with
    the adapter disabled). ``base`` becomes the adapter's base model: do not score it on its own afterwards."""
    tuned = sft.load_adapter(cfg, adapter, base)
    # One cast copy (model.scoring_dtype) serves both: the adapter is switched off on the model actually scored.
    model = scoring.for_scoring(tuned, cfg.model.scoring_dtype)
    score = scorer(cfg, model, tokenizer)
    return {"fine-tuned": score, "zero-shot": _ZeroShot(model, score)}


def adapter_dir(cfg: Any) -> Path:
    """The folder of the LoRA adapter fine-tuned with the profile's main summary (notebook 06); a clear
    :class:`stages.MissingResult` saying what to run when it is not there."""
    settings = sft.adapter_config(cfg, user_prompts.main_summary(cfg))
    return stages.require(settings, sft.STAGE) / "adapter"


def load_scorers(cfg: Any) -> dict[str, Scorer]:
    """The profile's recommender as "fine-tuned" (with the main summary's adapter) and "zero-shot" scorers."""
    adapter = adapter_dir(cfg)  # before loading anything: a missing adapter fails in a second, not after a load
    m = cfg.model
    tokenizer = llm.load_tokenizer(m.recommender)
    base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    return scorers_for(cfg, base, tokenizer, adapter)


def user_inputs(cfg: Any, samples: pd.DataFrame, catalog: Mapping[str, Mapping[str, str]],
                summaries: Mapping[str, str] | None, tokenizer: Any) -> dict[str, UserInput]:
    """user id -> :class:`UserInput` for each sample (the test users of notebook 07, in their order)."""
    parts = user_prompts.user_parts(cfg, samples, catalog, summaries, tokenizer)
    return {u: UserInput(summary, list(recent), list(cands), list(ids))
            for u, (summary, recent, cands), ids in zip(samples["user_id"], parts, baselines.candidates(samples))}


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[:n - 1].rstrip() + "…"


def _delta_style(d: float) -> str:
    return "color:#1a7f37;" if d > 0 else "color:#c62828;" if d < 0 else "color:#888;"


def table_html(user: UserInput, scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The comparison table: one row per candidate (the positive first and marked), per scorer p(yes) with the own
    summary, with the edited text and the change; the positive's rank per scorer in the first row.

    ``scores``: scorer name -> {"own", "edited": p arrays, "rank_own", "rank_edited": ints}. Every p cell carries
    its full-precision value in ``data-p`` (and the tooltip): four decimals can hide a small change."""
    names = list(scores)
    head = ("<tr><th rowspan='2' style='text-align:left'>candidate</th>"
            + "".join(f"<th colspan='3' style='{_CELL}'>{html.escape(n)}</th>" for n in names) + "</tr><tr>"
            + "".join(f"<th style='{_CELL}'>own summary</th><th style='{_CELL}'>edited</th>"
                      f"<th style='{_CELL}'>change</th>" for _ in names) + "</tr>")
    rows = []
    for i, (item, line) in enumerate(zip(user.candidate_ids, user.candidates)):
        label = f"{html.escape(item)}: {html.escape(_short(line))}"
        if i == 0:
            label = f"<b>&#9733; positive</b> {label}"
        cells = []
        for n in names:
            own, edited = float(scores[n]["own"][i]), float(scores[n]["edited"][i])
            d = edited - own
            cells.append(
                f"<td class='p-own' data-scorer='{html.escape(n)}' data-p='{own!r}' title='{own!r}' "
                f"style='{_CELL}text-align:right'>{own:.4f}</td>"
                f"<td class='p-edited' data-scorer='{html.escape(n)}' data-p='{edited!r}' title='{edited!r}' "
                f"style='{_CELL}text-align:right'>{edited:.4f}</td>"
                f"<td class='p-change' style='{_CELL}text-align:right;{_delta_style(d)}'>{d:+.4f}</td>")
        style = "background:#fff7d6;font-weight:bold;" if i == 0 else ""
        rows.append(f"<tr style='{style}'><td style='{_CELL}'>{label}</td>{''.join(cells)}</tr>")
    ranks = []
    for n in names:
        a, b = scores[n]["rank_own"], scores[n]["rank_edited"]
        change = f"{b - a:+d}" if b != a else "0"  # a better rank is a smaller number: an improvement is green
        ranks.append(f"<td class='rank-own' data-scorer='{html.escape(n)}' style='{_CELL}text-align:right'>{a}</td>"
                     f"<td class='rank-edited' data-scorer='{html.escape(n)}' style='{_CELL}text-align:right'>{b}</td>"
                     f"<td style='{_CELL}text-align:right;{_delta_style(a - b)}'>{change}</td>")
    # First, above the candidates: the number a student looks for is visible without scrolling 21 rows.
    rows.insert(0, f"<tr style='background:#eef3fb'><td style='{_CELL}'><b>positive's rank</b> "
                   f"(1 = best of {len(user.candidates)}; ties count against it)</td>{''.join(ranks)}</tr>")
    return (f"<table class='counterfactual' style='border-collapse:collapse;font-size:90%'>"
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


class Counterfactual:
    """A test user, their editable summary, and every candidate's p(yes) before and after the edit.

    ``inputs``: :func:`user_inputs`; ``scorers``: name -> :data:`Scorer` (:func:`load_scorers`: "fine-tuned" and
    "zero-shot"). The *score* button (or :meth:`score`) scores the current user with the text in the box; the
    own-summary scores are computed once per user and cached. ``.last`` holds the numbers of the last scoring:
    ``{"user", "summary", "scores": {scorer: {"own", "edited", "rank_own", "rank_edited"}}}``.
    """

    def __init__(self, inputs: Mapping[str, UserInput], scorers: Mapping[str, Scorer]):
        import ipywidgets as w

        if not inputs:
            raise ValueError("no users to show")
        if not scorers:
            raise ValueError("no scorers")
        self.inputs, self.scorers = dict(inputs), dict(scorers)
        self.baseline: dict[str, dict[str, np.ndarray]] = {}  # user -> scorer -> p(yes) with the own summary
        self.last: dict[str, Any] | None = None
        self._no_summary = False  # the prompt without a summary section (a Textarea cannot hold None)
        users = list(self.inputs)
        self.user = w.Dropdown(options=users, description="user")
        self.text = w.Textarea(description="summary", layout=w.Layout(width="98%", height="7em"))
        self.source = w.Dropdown(description="use the summary of", style={"description_width": "initial"})
        self.own_button = w.Button(description="own summary")
        self.empty_button = w.Button(description="empty summary")
        self.none_button = w.Button(description="no summary", tooltip="the prompt without a summary section")
        self.score_button = w.Button(description="score", button_style="primary")
        self.status = w.HTML()
        self.table = w.HTML()
        self.user.observe(lambda change: self.show(change["new"]), names="value")
        self.source.observe(lambda change: self._take_summary_of(change["new"]), names="value")
        self.text.observe(lambda _: self._forget_source(), names="value")  # typing: no longer that user's text
        self.own_button.on_click(lambda _: self.set_summary(self.inputs[self.user.value].summary))
        self.empty_button.on_click(lambda _: self.set_summary(""))
        self.none_button.on_click(lambda _: self.set_summary(None))
        self.score_button.on_click(lambda _: self._on_score())
        self.widget = w.VBox([self.user, self.text,
                              w.HBox([self.source, self.own_button, self.empty_button, self.none_button]),
                              w.HBox([self.score_button, self.status]), self.table])
        self.show(users[0])

    # ------------------------------------------------------------------ state
    @property
    def summary(self) -> str | None:
        """The summary the next scoring puts in the prompt (None: no summary section)."""
        return None if self._no_summary else self.text.value

    def set_summary(self, summary: str | None) -> None:
        """Put ``summary`` in the box (None: no summary section; the box is then locked and empty)."""
        self._no_summary = summary is None
        self.text.disabled = summary is None
        self.text.placeholder = "(no summary section in the prompt)" if summary is None else ""
        self.text.value = summary or ""
        self._forget_source()

    def _forget_source(self) -> None:
        """Reset "use the summary of" once the box no longer holds that user's summary."""
        chosen = self.source.value
        if chosen != _NOBODY and (self._no_summary or self.text.value != self.inputs[chosen].summary):
            self.source.value = _NOBODY

    def _take_summary_of(self, other: str) -> None:
        if other != _NOBODY:
            self.set_summary(self.inputs[other].summary)

    def show(self, user: str) -> None:
        """Switch to ``user``: their own summary in the box, the table cleared until the next scoring."""
        if self.user.value != user:
            self.user.value = user  # calls show again through the observer
            return
        self.source.options = [("(choose a user)", _NOBODY)] + [(u, u) for u in self.inputs if u != user]
        self.source.value = _NOBODY
        self.set_summary(self.inputs[user].summary)
        n = len(self.inputs[user].candidates)
        self.status.value = f"<i>{n} candidates; press score to rank them with the text in the box</i>"
        self.table.value = ""

    def provenance(self) -> str:
        """Whose text the box holds: no summary section, the user's own summary, another test user's (named), or
        an edited text."""
        summary, user = self.summary, self.user.value
        if summary is None:
            return "no summary section"
        if summary == self.inputs[user].summary:
            return "the own summary"
        owners = [u for u, parts in self.inputs.items() if u != user and parts.summary == summary]
        if owners:  # two users can share one summary (e.g. the template fallback): name the first and count
            more = f" and {len(owners) - 1} other user(s)" if len(owners) > 1 else ""
            return f"user {owners[0]}'s summary{more} (another test user's)"
        return f"an edited summary ({len(summary.split())} words)"

    # ------------------------------------------------------------------ scoring
    def score(self) -> dict[str, Any]:
        """Score the current user with the own summary (cached) and with the box's text; fills the table."""
        import time

        user, summary = self.user.value, self.summary
        parts = self.inputs[user]
        began = time.perf_counter()
        own = self.baseline.setdefault(user, {})
        result: dict[str, dict[str, Any]] = {}
        for name, score in self.scorers.items():
            if name not in own:
                own[name] = np.asarray(score(parts.summary, parts.recent, parts.candidates), dtype=np.float64)
            # The unchanged text is the baseline itself: no second pass of the model.
            edited = (own[name] if summary == parts.summary
                      else np.asarray(score(summary, parts.recent, parts.candidates), dtype=np.float64))
            for p in (own[name], edited):
                if p.shape != (len(parts.candidates),):
                    raise ValueError(f"scorer {name!r} gave {p.shape} scores for {len(parts.candidates)} candidates")
            result[name] = {"own": own[name], "edited": edited, "rank_own": metrics.positive_rank(own[name]),
                            "rank_edited": metrics.positive_rank(edited)}
        self.last = {"user": user, "summary": summary, "scores": result}
        self.table.value = table_html(parts, result)
        what = self.provenance()
        ranks = "; ".join(f"{html.escape(n)} {r['rank_own']} &rarr; {r['rank_edited']}" for n, r in result.items())
        self.status.value = (f"user {html.escape(user)}, {what}: positive's rank {ranks} "
                             f"<small>({time.perf_counter() - began:.1f} s)</small>")
        return self.last

    def _on_score(self) -> None:
        # A button callback's exception would only reach Lab's log console: say it next to the button instead.
        self.score_button.disabled = True
        self.status.value = "<i>scoring…</i>"
        try:
            self.score()
        except Exception as exc:  # noqa: BLE001 - shown to the student, who can fix the text and retry
            what = html.escape(f"{type(exc).__name__}: {exc}")
            self.status.value = f"<b style='color:#c62828'>{what}</b>"
        finally:
            self.score_button.disabled = False

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def static_html(self) -> str:
        """The current view as plain HTML (renders in executed notebooks and exported pages)."""
        shown = ("<i>(no summary section)</i>" if self.summary is None
                 else html.escape(self.summary) or "<i>(empty)</i>")
        return (f"<div style='{_PANE}'><b>user {html.escape(str(self.user.value))}</b><br>"
                f"<small>summary in the prompt ({html.escape(self.provenance())}):</small> {shown}</div>"
                f"<div style='{_PANE}'>{self.status.value}</div>{self.table.value}")
