"""The counterfactual summary widget: its scorer is the evaluation's, its ranks are metrics.positive_rank's."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from trsr_utils.report import counterfactual
from trsr_utils.stages import table_rows
from trsr_utils.method import llm, metrics, scoring, user_prompts
from trsr_utils import stages
from trsr_utils.core.config import resolve_config
from trsr_utils.method import lora
from trsr_utils.stages import sft

CATALOG = {str(i): {"title": f"Movie {i} ({1980 + i})", "genres": ["Drama", "Comedy", "Western", "Sci-Fi"][i % 4]}
           for i in range(1, 13)}
SUMMARIES = {"u1": "This user likes quiet dramas and comedies.", "u2": "Westerns and war films, nothing else.",
             "u3": "Mostly science fiction with space battles."}


def _samples() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1", "u2", "u3"], "split": "test",
                         "history": [["1", "2", "3", "4"], ["5", "6", "7"], ["8", "9", "1", "2", "3"]],
                         "positive": ["5", "10", "11"],
                         "negatives": [["6", "7", "8", "9"], ["11", "12", "1", "2"], ["12", "4", "5", "6"]]})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model on one thread: its matrices are too small to share out, and on a busy 2-core machine torch's
    threads wait for each other (one prompt scored 0.9 s on two threads, 0.01 s on one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return resolve_config("smoke", tmp_path_factory.mktemp("run"), {})


@pytest.fixture(scope="module")
def tok():
    return llm.load_tokenizer(llm.TINY)


@pytest.fixture(scope="module")
def base():
    """The tiny random Llama, never wrapped in an adapter (the zero-shot reference)."""
    return llm.load_model(llm.TINY, device="cpu")


@pytest.fixture(scope="module")
def adapter(cfg, tmp_path_factory):
    """A saved LoRA adapter for the tiny model whose B matrices are random (a fresh one is the identity)."""
    import torch

    model = lora.with_lora(cfg, llm.load_model(llm.TINY, device="cpu"))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def inputs(cfg, tok):
    return counterfactual.user_inputs(cfg, _samples(), CATALOG, SUMMARIES, tok)


@pytest.fixture(scope="module")
def tiny_scorers(cfg, tok, adapter):
    return counterfactual.scorers_for(cfg, llm.load_model(llm.TINY, device="cpu"), tok, adapter)


def test_user_inputs_are_the_prompt_parts_and_candidate_ids(cfg, tok, inputs):
    parts = user_prompts.user_parts(cfg, _samples(), CATALOG, SUMMARIES, tok)
    assert list(inputs) == ["u1", "u2", "u3"]
    for (summary, recent, cands), u in zip(parts, inputs.values()):
        assert (u.summary, u.recent, u.candidates) == (summary, recent, cands)
    assert inputs["u2"].candidate_ids == ["10", "11", "12", "1", "2"] and "Movie 10" in inputs["u2"].candidates[0]


def test_scorer_gives_the_evaluations_numbers(cfg, tok, base, adapter, inputs, tiny_scorers):
    score = counterfactual.scorer(cfg, base, tok)
    prompter = user_prompts.RecommendationPrompter.from_config(cfg, tok)
    mine = {}
    for name, u in inputs.items():
        prompt = prompter.build(u.summary, u.recent, u.candidates)
        mine[name] = score(u.summary, u.recent, u.candidates)
        np.testing.assert_array_equal(mine[name], table_rows.score_prompts(cfg, [prompt], base, tok, None, "test")[0])
    # All users in one call of the evaluation (batched, left-padded): the same numbers up to float32 rounding.
    together = table_rows.score_prompts(cfg, user_prompts.build(cfg, _samples(), CATALOG, SUMMARIES, tok), base, tok,
                                        None, "test")
    for name, expected in zip(inputs, together):
        np.testing.assert_allclose(mine[name], expected, atol=1e-6, rtol=0)
    # The fine-tuned scorer equals the evaluation's scoring with the same adapter (attached to a fresh base).
    u = inputs["u1"]
    prompt = prompter.build(u.summary, u.recent, u.candidates)
    tuned = table_rows.score_prompts(cfg, [prompt], llm.load_model(llm.TINY, device="cpu"), tok, adapter, "test")[0]
    np.testing.assert_array_equal(tiny_scorers["fine-tuned"](u.summary, u.recent, u.candidates), tuned)


def test_zero_shot_is_the_plain_base_model_and_fine_tuned_is_not(cfg, tok, base, inputs, tiny_scorers):
    plain = counterfactual.scorer(cfg, base, tok)
    for name in ("u1", "u3"):
        u = inputs[name]
        tuned = tiny_scorers["fine-tuned"](u.summary, u.recent, u.candidates)
        zero = tiny_scorers["zero-shot"](u.summary, u.recent, u.candidates)
        np.testing.assert_array_equal(zero, plain(u.summary, u.recent, u.candidates))
        assert not np.array_equal(tuned, zero)
    # The adapter is on again after a zero-shot call.
    np.testing.assert_array_equal(tiny_scorers["fine-tuned"](u.summary, u.recent, u.candidates), tuned)


def test_another_summary_moves_p_yes(cfg, tok, base, inputs):
    score = counterfactual.scorer(cfg, base, tok)
    u = inputs["u1"]
    own = score(u.summary, u.recent, u.candidates)
    for other in (SUMMARIES["u2"], "", None):
        p = score(other, u.recent, u.candidates)
        assert p.shape == own.shape and np.all((p > 0) & (p < 1))
        assert not np.array_equal(p, own), f"summary {other!r} left every p(yes) unchanged"


def test_no_summary_leaves_the_summary_section_out(cfg, tok, base, inputs, monkeypatch):
    built = []

    def spy(model, prompts, answer, *args, **kwargs):
        built.extend(prompts)
        return [np.zeros(len(p.suffix_ids)) for p in prompts]

    monkeypatch.setattr(scoring, "score_users", spy)
    score = counterfactual.scorer(cfg, base, tok)
    u = inputs["u1"]
    for summary in (None, "", "Likes westerns."):
        score(summary, u.recent, u.candidates)
    none, empty, text = (p.prefix for p in built)
    assert "Preference summary" not in none and "a summary of their preferences" not in none
    assert "Preference summary:" in empty
    assert "Preference summary: Likes westerns." in text
    assert u.recent[-1] in none and u.candidates[0] in built[0].suffixes[0]


def test_load_scorers_needs_notebook_06s_adapter_then_loads_it(tmp_path, tok, adapter, inputs, tiny_scorers):
    import shutil

    cfg = resolve_config("smoke", tmp_path, {})
    with pytest.raises(stages.MissingResult, match="run notebook 06_lora_sft first"):
        counterfactual.load_scorers(cfg)
    settings = stages.sft.adapter_config(cfg, user_prompts.main_summary(cfg))
    shutil.copytree(adapter, stages.result_dir(settings, sft.STAGE, create=True) / "adapter")
    stages.finish(settings, sft.STAGE)
    loaded = counterfactual.load_scorers(cfg)
    assert set(loaded) == {"fine-tuned", "zero-shot"}
    u = inputs["u2"]
    for name in loaded:
        np.testing.assert_array_equal(loaded[name](u.summary, u.recent, u.candidates),
                                      tiny_scorers[name](u.summary, u.recent, u.candidates))


# ----------------------------------------------------------------- the widget, with fake scorers
OWN = {"fine-tuned": [0.5, 0.6, 0.4, 0.5, 0.1], "zero-shot": [0.3, 0.2, 0.1, 0.0, 0.1]}  # ranks 3 (a tie) and 1
EDITED = {"fine-tuned": [0.9, 0.1, 0.9, 0.2, 0.3], "zero-shot": [0.05, 0.2, 0.1, 0.3, 0.01]}  # ranks 2 (tie), 4


def fake_scorers(calls):
    def make(name):
        def score(summary, recent, candidates):
            calls.append((name, summary))
            own = summary in SUMMARIES.values()
            return np.array(OWN[name] if own else EDITED[name])
        return score
    return {"fine-tuned": make("fine-tuned"), "zero-shot": make("zero-shot")}


def _rank_cell(table: str, kind: str, scorer: str) -> int:
    found = re.search(rf"class='rank-{kind}' data-scorer='{scorer}'[^>]*>(\d+)</td>", table)
    assert found, f"no {kind} rank for {scorer} in the table"
    return int(found.group(1))


def test_widget_ranks_are_metrics_positive_rank(inputs):
    calls = []
    ui = counterfactual.Counterfactual(inputs, fake_scorers(calls))
    assert ui.user.value == "u1" and ui.text.value == SUMMARIES["u1"] and ui.table.value == ""
    ui.text.value = "Only silent films."  # what typing in the box does
    ui.score_button.click()
    last = ui.last
    assert last["user"] == "u1" and last["summary"] == "Only silent films."
    for name in ("fine-tuned", "zero-shot"):
        r = last["scores"][name]
        np.testing.assert_array_equal(r["own"], OWN[name])
        np.testing.assert_array_equal(r["edited"], EDITED[name])
        assert r["rank_own"] == metrics.positive_rank(OWN[name])
        assert r["rank_edited"] == metrics.positive_rank(EDITED[name])
        assert _rank_cell(ui.table.value, "own", name) == r["rank_own"]
        assert _rank_cell(ui.table.value, "edited", name) == r["rank_edited"]
    assert (last["scores"]["fine-tuned"]["rank_own"], last["scores"]["fine-tuned"]["rank_edited"]) == (3, 2)
    assert (last["scores"]["zero-shot"]["rank_own"], last["scores"]["zero-shot"]["rank_edited"]) == (1, 4)
    assert "&#9733; positive</b> 5: " in ui.table.value and "+0.4000" in ui.table.value  # marked; 0.9 - 0.5
    assert "fine-tuned 3 &rarr; 2" in ui.status.value
    # The own-summary scores are cached per user: a second edit scores only the edited text.
    calls.clear()
    ui.text.value = "Only cartoons."
    ui.score()
    assert calls == [("fine-tuned", "Only cartoons."), ("zero-shot", "Only cartoons.")]
    assert "Only cartoons." in ui.static_html() and ui.table.value in ui.static_html()
    assert "(an edited summary (2 words))" in ui.static_html()


def test_widget_summary_choices(inputs):
    calls = []
    ui = counterfactual.Counterfactual(inputs, fake_scorers(calls))
    assert list(ui.source.options) == [("(choose a user)", ""), ("u2", "u2"), ("u3", "u3")]
    ui.source.value = "u3"  # "use the summary of" u3
    assert ui.text.value == SUMMARIES["u3"] and ui.summary == SUMMARIES["u3"]
    ui.score()
    assert ui.last["summary"] == SUMMARIES["u3"] and ("fine-tuned", SUMMARIES["u3"]) in calls
    # whose summary it is, in the status and the static copy (a student reading an export sees no dropdown)
    assert "user u3's summary (another test user's)" in ui.status.value
    assert "summary in the prompt (user u3&#x27;s summary (another test user&#x27;s))" in ui.static_html()
    ui.text.value = SUMMARIES["u3"] + " And musicals."  # edited: no longer u3's summary
    assert ui.source.value == ""
    ui.none_button.click()
    assert ui.summary is None and ui.text.disabled and ui.text.value == ""
    ui.score()
    assert ui.last["summary"] is None and ("zero-shot", None) in calls and "no summary section" in ui.status.value
    assert "(no summary section)" in ui.static_html()
    ui.empty_button.click()
    assert ui.summary == "" and not ui.text.disabled
    ui.own_button.click()
    assert ui.summary == SUMMARIES["u1"]
    calls.clear()
    ui.score()  # the own summary: the cached baseline is the edited column too, no model call
    assert calls == [] and ui.last["scores"]["fine-tuned"]["rank_edited"] == 3
    ui.user.value = "u2"  # another user: their summary, the other users to copy from, an empty table
    assert ui.text.value == SUMMARIES["u2"] and ui.table.value == ""
    assert [v for _, v in ui.source.options] == ["", "u1", "u3"]


def test_a_scorer_error_is_shown_beside_the_button(inputs):
    ui = counterfactual.Counterfactual(inputs, {"broken": lambda summary, recent, candidates: np.zeros(2)})
    with pytest.raises(ValueError, match="gave \\(2,\\) scores for 5 candidates"):
        ui.score()
    ui.score_button.click()  # a callback's exception would vanish into Lab's log: it is shown instead
    assert "ValueError" in ui.status.value and not ui.score_button.disabled and ui.table.value == ""


def test_widget_with_the_tiny_model_shows_both_ranks(inputs, tiny_scorers):
    ui = counterfactual.Counterfactual(inputs, tiny_scorers)
    ui.user.value = "u3"
    ui.score_button.click()
    same = ui.last["scores"]
    for name in ("fine-tuned", "zero-shot"):
        np.testing.assert_array_equal(same[name]["own"], same[name]["edited"])
        assert _rank_cell(ui.table.value, "own", name) == metrics.positive_rank(same[name]["own"])
    ui.text.value = "This user hates everything."
    ui.score_button.click()
    assert ui.status.value.startswith("user u3, an edited summary")
    for name in ("fine-tuned", "zero-shot"):
        r = ui.last["scores"][name]
        assert not np.array_equal(r["own"], r["edited"])
        assert _rank_cell(ui.table.value, "edited", name) == metrics.positive_rank(r["edited"]) == r["rank_edited"]
    html = ui.table.value
    own = [float(x) for x in re.findall(r"class='p-own' data-scorer='zero-shot' data-p='([^']+)'", html)]
    np.testing.assert_array_equal(own, ui.last["scores"]["zero-shot"]["own"])  # full precision in data-p
