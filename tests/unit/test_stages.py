"""Stage fingerprints: which settings each stage depends on, stale results never re-used, status, killed stages."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from trsr_utils.stages import evaluation
from trsr_utils.stages import table_rows
from trsr_utils import stages
from trsr_utils.core import io
from trsr_utils.core.config import Config, resolve_config, with_overrides
from trsr_utils.data import preparation
from trsr_utils.method import compare
from trsr_utils.stages import chunking, prepare

ALL = set(stages.STAGES)
AFTER_TEXT = ALL - {"01_data"}
SUMMARIES = {"03_hierarchical", "04_recurrent", "05_compare", "06_sft", "07_eval", "08_ablations", "09_beyond"}
RECOMMENDER = {"06_sft", "07_eval", "08_ablations", "09_beyond"}
LLM_SUMMARIZER_AND_RECOMMENDER = SUMMARIES  # precision settings: both LLMs
# What changing each configuration field must recompute (written from what each stage does, not read back from the
# registry). A new field fails the test until it is listed here.
EXPECTED: dict[str, set[str]] = {
    "profile": set(), "description": set(), "run_dir": set(),
    "seed": ALL,
    **{f"data.{f}": ALL for f in ("dataset", "source_dir", "locale", "min_interactions", "max_interactions",
                                  "long_history", "n_train", "n_valid", "n_test", "train_negatives",
                                  "eval_negatives", "negative_source", "mind_sequence", "on_error")},
    # the upstream protocol is its data, text and sft settings (config.UPSTREAM): the negatives change everything
    "eval.protocol": ALL,
    "text.attributes": AFTER_TEXT, "text.include_abstract": AFTER_TEXT, "text.max_field_tokens": AFTER_TEXT,
    "chunking.items_per_block": AFTER_TEXT, "chunking.block_token_budget": AFTER_TEXT,
    "chunking.max_blocks": AFTER_TEXT,
    "model.summarizer": AFTER_TEXT, "model.recommender": RECOMMENDER,
    "model.dtype": LLM_SUMMARIZER_AND_RECOMMENDER, "model.quantization": RECOMMENDER,
    # The summarizer's own precision: its summaries and everything that reads them, not 02's tokenizer use.
    "model.summarizer_dtype": SUMMARIES, "model.summarizer_quantization": SUMMARIES,
    "model.device": LLM_SUMMARIZER_AND_RECOMMENDER, "model.scoring_dtype": RECOMMENDER,
    # notebook 05's predictiveness ranks with the last k items as one of its queries
    "prompt.domain": SUMMARIES, "prompt.recent_items": RECOMMENDER | {"05_compare"}, "prompt.max_length": RECOMMENDER,
    "prompt.summary_max_tokens": RECOMMENDER,
    **{f"summary.{f}": SUMMARIES for f in ("max_new_tokens", "max_sentences", "do_sample",
                                           "retry_repetition_penalty", "retry_no_repeat_ngram_size",
                                           "retry_token_factor")},
    # Greedy decoding (the profiles' default) ignores them; with sampling on they change the summaries (test below).
    "summary.temperature": set(), "summary.top_p": set(),
    "summary.batch_size": set(),  # batching changes no result (the LLM call cache ignores it too)
    # Only the hierarchical summary is merged: the recurrent one, and what reads only it, stay.
    "summary.merge_fan_in": SUMMARIES - {"04_recurrent"},
    # The profile's sft.summary picks notebook 06's adapter and 08's and 09's main summary; 07's rows each name
    # their own.
    "sft.summary": {"06_sft", "08_ablations", "09_beyond"},
    **{f"sft.{f}": RECOMMENDER for f in ("loss", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
                                         "learning_rate", "batch_size", "grad_accum", "epochs", "max_steps",
                                         "save_steps", "warmup_ratio", "weight_decay", "gradient_checkpointing",
                                         "mixed_precision", "shared_prefix", "seed_offset", "valid_users", "select")},
    "sft.logging_steps": set(), "sft.validate_zero_shot": set(), "sft.score_batch_users": set(),
    "eval.baselines": {"07_eval"}, "eval.llm": {"07_eval"},
    "eval.test_users": {"07_eval", "08_ablations", "09_beyond"},
    # 09 trains SASRec as a retriever with 07's RecBole settings.
    "eval.recbole_epochs": {"07_eval", "09_beyond"}, "eval.recbole_embedding_size": {"07_eval", "09_beyond"},
    "eval.recbole_max_seq_length": {"07_eval", "09_beyond"}, "eval.recbole_learning_rate": {"07_eval", "09_beyond"},
    "eval.bootstrap": {"07_eval", "09_beyond"}, "eval.full_catalogue": {"07_eval"},
    "eval.upstream_check": {"07_eval"}, "eval.ablation_zero_shot": {"08_ablations"}, "eval.all_interactions": {"07_eval"},
    "eval.recbole_epochs_all": {"07_eval"}, "eval.sft_seeds": {"07_eval"},
    "eval.ablation_recent_items": {"08_ablations"}, "eval.ablation_items_per_block": {"08_ablations"},
    "eval.ablation_summarizers": {"08_ablations"}, "eval.ablation_finetuned": {"08_ablations"},
    **{f"eval.{f}": {"08_ablations"} for f in ("reliance_controls", "positive_controls", "order_test",
                                                "equivalence_margin")},
    # timing_users: what the stored speed measurement was made on
    **{f"beyond.{f}": {"09_beyond"} for f in ("users", "train_users", "orders", "train_orders", "retrieve",
                                                   "rerank_order", "timing_users")},
}
# A valid other value for fields whose type alone does not give one.
CHANGED = {
    "data.dataset": "mind", "data.long_history": "drop", "data.on_error": "skip",
    "data.locale": "DE", "data.source_dir": "elsewhere", "data.min_interactions": 9, "data.max_interactions": 12,
    "text.attributes": ["title"], "model.summarizer": "some/other-model", "model.recommender": "some/other-model",
    "model.dtype": "bfloat16", "model.quantization": "8bit", "model.scoring_dtype": "bfloat16",
    "model.summarizer_dtype": "bfloat16", "model.summarizer_quantization": "8bit",
    "model.device": "cuda", "prompt.domain": "news",
    "sft.summary": "recurrent", "sft.loss": "whole", "sft.mixed_precision": "bfloat16", "sft.target_modules": ["q_proj"],
    "sft.select": "last",
    "eval.baselines": ["popularity"], "eval.all_interactions": ["popularity"], "eval.llm": ["zero_shot"], "eval.ablation_summarizers": ["tiny-random"],
    "eval.ablation_recent_items": [2], "eval.ablation_items_per_block": [4], "summary.do_sample": True,
    "beyond.rerank_order": "shuffled",
    "eval.reliance_controls": ["empty"], "eval.positive_controls": ["template"], "eval.equivalence_margin": 0.1,
}


def flat_fields(cfg: Config) -> dict[str, object]:
    out = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{f}": v for f, v in value.items()})
        else:
            out[key] = value
    return out


def other_value(key: str, value: object) -> object:
    if key == "data.negative_source":
        return "impressions"
    if key in CHANGED:
        return CHANGED[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-x"
    raise AssertionError(f"no other value for {key}={value!r}: add one to CHANGED")


def changed_cfg(cfg: Config, key: str) -> Config:
    value = other_value(key, flat_fields(cfg)[key])
    if key in ("profile", "description", "run_dir"):
        return dataclasses.replace(cfg, **{key: value})
    if key == "data.negative_source":  # the only other source, impressions, exists for MIND only
        return with_overrides(cfg, {"data.dataset": "mind", key: "impressions"})
    if key == "data.mind_sequence":
        return with_overrides(cfg, {"data.dataset": "mind", key: "history"})
    if key == "eval.protocol":
        return with_overrides(cfg, {key: "upstream"})
    if key in ("sft.loss", "sft.gradient_checkpointing"):  # neither goes with the profile's shared prefix
        return with_overrides(cfg, {key: value, "sft.shared_prefix": False})
    return with_overrides(cfg, {key: value})


def test_every_field_recomputes_exactly_the_stages_that_depend_on_it(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"data.dataset": "movielens-100k"})
    assert set(flat_fields(cfg)) == set(EXPECTED), "a configuration field is missing from EXPECTED (or gone)"
    before = {n: stages.fingerprint(cfg, n).digest for n in stages.STAGES}
    wrong = {}
    for key, expected in EXPECTED.items():
        new = changed_cfg(cfg, key)
        after = {n: stages.fingerprint(new, n).digest for n in stages.STAGES}
        changed = {n for n in stages.STAGES if after[n] != before[n]}
        if changed != expected:
            wrong[key] = {"recomputes": sorted(changed), "expected": sorted(expected)}
    assert not wrong, json.dumps(wrong, indent=1)


def test_a_setting_added_later_keeps_earlier_fingerprints_at_its_old_behaviour(tmp_path):
    cfg = resolve_config("smoke-mind", tmp_path)
    assert cfg.data.mind_sequence == stages.ADDED["data.mind_sequence"]
    assert "data.mind_sequence" not in stages.settings(cfg, ["data"])  # as before the setting existed
    assert stages.settings(with_overrides(cfg, {"data.mind_sequence": "history", "data.negative_source": "uniform"}),
                           ["data"])["data.mind_sequence"] == "history"
    # the config digest (variant folders, manifests) too: as it was before either setting existed
    before = cfg.to_dict()
    for key in ("run_dir", "profile", "description"):
        before.pop(key)
    del before["data"]["mind_sequence"], before["eval"]["protocol"]
    del before["eval"]["upstream_check"], before["eval"]["ablation_zero_shot"], before["sft"]["select"]
    assert stages.config_digest(cfg) == stages.digest(before)[:stages.DIGEST_CHARS]
    assert stages.config_digest(with_overrides(cfg, {"eval.protocol": "upstream"})) != stages.config_digest(cfg)


def test_sampling_settings_count_only_when_sampling(tmp_path):
    sampling = resolve_config("smoke", tmp_path, {"data.dataset": "movielens-100k", "summary.do_sample": True})
    before = {n: stages.fingerprint(sampling, n).digest for n in stages.STAGES}
    for key in ("summary.temperature", "summary.top_p"):
        new = with_overrides(sampling, {key: 0.5})
        assert {n for n in stages.STAGES if stages.fingerprint(new, n).digest != before[n]} == SUMMARIES, key


def test_each_model_is_fingerprinted_in_its_own_precision(tmp_path):
    """Summaries depend on the summarizer's resolved precision, not on how it is spelled: naming the recommender's
    dtype again changes nothing, and a bf16 recommender beside a pinned float32 summarizer keeps the summaries."""
    cfg = resolve_config("smoke", tmp_path, {"data.dataset": "movielens-100k"})
    before = {n: stages.fingerprint(cfg, n).digest for n in stages.STAGES}
    same = with_overrides(cfg, {"model.summarizer_dtype": cfg.model.dtype})
    assert {n: stages.fingerprint(same, n).digest for n in stages.STAGES} == before
    pinned = with_overrides(cfg, {"model.summarizer_dtype": "float32", "model.dtype": "bfloat16"})
    assert {n for n in stages.STAGES if stages.fingerprint(pinned, n).digest != before[n]} == RECOMMENDER
    paper = resolve_config("paper-mind", tmp_path)
    assert paper.model.precision("summarizer") == ("bfloat16", "8bit")
    assert paper.model.precision("recommender") == ("bfloat16", None)


@pytest.mark.parametrize("part, function, expected", [
    # the profile fine-tunes on hierarchical summaries: 06 and 09 do not read the recurrent ones
    ("update prompt", "recurrent_messages", SUMMARIES - {"03_hierarchical", "06_sft", "09_beyond"}),
    ("merge prompt", "merge_messages", SUMMARIES - {"04_recurrent"}),
    ("block prompt", "block_summary_messages", SUMMARIES),
    ("recommendation prompt", "recommendation_messages", RECOMMENDER),
    ("listwise prompt", "listwise_messages", {"09_beyond"}),
])
def test_an_edited_prompt_is_a_new_result_not_an_overwritten_one(tmp_path, monkeypatch, part, function, expected):
    from trsr_utils.method import prompts

    cfg = resolve_config("smoke", tmp_path, {"data.dataset": "movielens-100k"})
    before = {n: stages.fingerprint(cfg, n) for n in stages.STAGES}
    original = getattr(prompts, function)

    def reworded(*args):  # what a student's edit of trsr_utils/method/prompts.py does
        messages = original(*args)
        return [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + " Say what is new."}]

    monkeypatch.setattr(prompts, function, reworded)
    after = {n: stages.fingerprint(cfg, n) for n in stages.STAGES}
    assert {n for n in stages.STAGES if after[n].digest != before[n].digest} == expected
    first = sorted(expected)[0]
    assert f"{part} (code) changed" in stages.diff(before[first].parts, after[first].parts)


def test_edited_genre_aliases_recompute_only_the_comparison(tmp_path, monkeypatch):

    cfg = resolve_config("smoke", tmp_path, {"data.dataset": "movielens-100k"})
    before = {n: stages.fingerprint(cfg, n).digest for n in stages.STAGES}
    monkeypatch.setattr(compare, "MENTION_ALIASES", {**compare.MENTION_ALIASES, "western": r"\\bwestern|\\bcowboy"})
    assert {n for n in stages.STAGES if stages.fingerprint(cfg, n).digest != before[n]} == {"05_compare"}


def test_raw_data_files_are_part_of_the_data_fingerprint(tmp_path, fixture_copy):
    folder = fixture_copy("ml-100k")
    cfg = resolve_config("smoke", tmp_path, {"data.source_dir": str(folder)})
    before = stages.fingerprint(cfg, "01_data")
    with open(folder / "ml-100k.inter", "a") as fh:
        fh.write("1\t1\t5\t999999999\n")
    after = stages.fingerprint(cfg, "01_data")
    assert after.digest != before.digest
    assert stages.diff(before.parts, after.parts) == [f"ml-100k.inter: {before.parts['data_files']['ml-100k.inter'][:12]}"
                                                      f" -> {after.parts['data_files']['ml-100k.inter'][:12]}"]


def test_status_names_the_setting_that_changed_and_keeps_both_results(tmp_path):
    cfg = resolve_config("smoke", tmp_path)
    prepare.write(cfg, preparation.prepare(cfg))
    rows = {r.stage: r for r in stages.status(cfg)}
    assert rows["01_data"].state == "up to date" and rows["02_text"].state == "missing"
    assert rows["02_text"].reasons == ["no result yet"]
    assert "needs notebooks 01, 02 first" in rows["03_hierarchical"].reasons or \
        "needs notebooks 02 first" in rows["03_hierarchical"].reasons

    other = with_overrides(cfg, {"data.n_test": 5})
    changed = {r.stage: r for r in stages.status(other)}
    assert changed["01_data"].state == "would recompute" and changed["01_data"].reasons == ["data.n_test: 6 -> 5"]
    prepare.write(other, preparation.prepare(other))
    # both results side by side; switching back finds the first again
    assert len([p for p in (tmp_path / "01_data").iterdir()]) == 2
    assert stages.is_complete(cfg, "01_data") and stages.is_complete(other, "01_data")
    text = stages.format_status(stages.status(cfg, ["01_data"]))
    assert text.startswith("01_data") and "up to date" in text


def test_a_killed_stage_is_never_accepted_as_finished(tmp_path):
    cfg = resolve_config("smoke", tmp_path)
    prepare.write(cfg, preparation.prepare(cfg))
    folder = stages.result_dir(cfg, "01_data")
    (folder / stages.RECORD).unlink()  # killed after the data files, before the completion record
    assert not stages.is_complete(cfg, "01_data")
    with pytest.raises(stages.MissingResult, match="unfinished"):
        prepare.read(cfg)
    assert stages.status(cfg, ["01_data"])[0].reasons[0].startswith("an unfinished result")
    (folder / stages.RECORD).write_text("{\"stage\": \"01_data\", \"fing")  # killed while writing it
    assert not stages.is_complete(cfg, "01_data")
    prepare.write(cfg, preparation.prepare(cfg))
    assert stages.is_complete(cfg, "01_data")


def test_writing_a_result_again_keeps_its_first_record(tmp_path, monkeypatch):
    """A pass over the caches writes the record again: the first write's time, seconds and commit stay."""
    cfg = resolve_config("smoke", tmp_path)
    states = iter([{"commit": "aaa", "dirty": False}, {"commit": "bbb", "dirty": True}, {"commit": "ccc", "dirty": False}])
    monkeypatch.setattr(io, "git_state", lambda: next(states))
    folder = stages.finish(cfg, "01_data", 12.5)
    first = stages.record(folder)
    assert "first" not in first and first["seconds"] == 12.5
    stages.finish(cfg, "01_data", 0.4)
    again = stages.record(folder)
    assert again["seconds"] == 0.4 and again["git"]["commit"] == "bbb" and again["writes"] == 2
    assert again["first"] == {"created": first["created"], "seconds": 12.5, "git": {"commit": "aaa", "dirty": False}}
    stages.finish(cfg, "01_data", 0.3)
    third = stages.record(folder)
    assert third["writes"] == 3 and third["first"]["seconds"] == 12.5 and third["first"]["git"]["commit"] == "aaa"
    assert stages.is_complete(cfg, "01_data")


def test_blocks_under_other_chunking_settings_are_cut_and_stored_beside_the_profiles(tmp_path):
    """ensure_blocks: the stored blocks when complete; else cut as notebook 02 cuts them, in their own folder."""
    cfg = resolve_config("smoke", tmp_path)
    prepared = preparation.prepare(cfg)
    prepare.write(cfg, prepared)
    prepared = prepare.read(cfg)
    three = with_overrides(cfg, {"chunking.items_per_block": 3})
    blocks = chunking.ensure_blocks(three, prepared)
    assert stages.is_complete(three, "02_text") and not stages.is_complete(cfg, "02_text")
    assert blocks["item_ids"].map(len).max() == 3
    assert sorted(blocks["user_id"].unique()) == sorted(prepared.samples["user_id"].unique())
    # the same blocks as every sample's history cut item by item, oldest first, three at a time
    history = prepared.samples.set_index("user_id")["history"]
    for user, own in blocks.groupby("user_id", sort=False):
        assert [i for ids in own["item_ids"] for i in ids] == list(history[user])[-sum(own["item_ids"].map(len)):]
    again = chunking.ensure_blocks(three, prepared)  # stored: read back, not cut again
    assert again.equals(blocks) and len(list((tmp_path / "02_text").iterdir())) == 1


def test_registry_names_notebooks_and_upstream_stages():
    for stage in stages.STAGES.values():
        assert stages.for_notebook(stage.notebook + ".ipynb") is stage
        assert all(stages.STAGES[r.name] is r and r.name < stage.name for r in stage.reads)
    # registration order is the chain's: every stage after the stages it reads
    order = list(stages.STAGES)
    assert order == sorted(order)
    from trsr_utils.tools import pipeline

    found = {p.stem: stages.for_notebook(p.name) for p in pipeline.discover()}
    assert {s.name for s in found.values() if s is not None} == set(stages.STAGES)
    # notebook 10 prices the run and stores nothing: no stage, no fingerprint
    assert [name for name, s in found.items() if s is None] == ["10_scaling_plan"]


def test_another_recbole_setting_retrains_only_that_model(tmp_path):
    """eval.recbole_epochs changes SASRec's scores only; popularity is re-used; the first table stays."""
    base = {"eval.baselines": ["popularity", "SASRec"], "eval.llm": [], "eval.recbole_epochs": 1,
            "eval.all_interactions": ["popularity"]}
    cfg = resolve_config("smoke", tmp_path, base)
    prepare.write(cfg, preparation.prepare(cfg))
    messages: list[str] = []
    first = evaluation.run(cfg, log=messages.append)
    whole = [m.rsplit(" (", 1)[0] for m in messages if "whole catalogue" in m]  # the full-catalogue protocol
    upstream = [m for m in messages if "upstream negatives" in m]  # the official code's negatives
    closing = [m for m in messages if " rows ranked for " in m]  # evaluation.run's closing line: where the table is
    assert len(closing) == 1
    assert sorted(m for m in messages if m not in upstream + closing and "whole catalogue" not in m) == [
        "Popularity (all users): computing scores", "Popularity: computing scores", "SASRec: computing scores"]
    assert sorted(whole) == ["Popularity (all users): ranking the whole catalogue",
                             "Popularity: ranking the whole catalogue", "SASRec: ranking the whole catalogue"]
    assert sorted(upstream) == [f"{n}: ranking 6 users among the upstream negatives"
                                for n in ("Popularity (all users)", "Popularity", "SASRec")]
    table_dir = stages.result_dir(cfg, "07_eval")

    messages.clear()
    more = with_overrides(cfg, {"eval.recbole_epochs": 2})
    rows = {r.stage: r for r in stages.status(more, ["07_eval"])}
    assert rows["07_eval"].reasons == ["eval.recbole_epochs: 1 -> 2"]
    evaluation.run(more, log=messages.append)
    assert [m.split(" (")[0] for m in messages if " rows ranked for " not in m] == ["SASRec: computing scores",
                                                    "SASRec: ranking 6 users among the upstream negatives",
                                                    "SASRec: ranking the whole catalogue"]
    assert stages.result_dir(more, "07_eval") != table_dir and (table_dir / "results.csv").exists()
    # a changed input is explained by what changed in it
    fewer = with_overrides(cfg, {"data.n_test": 5})
    assert "input 01_data changed (data.n_test: 6 -> 5)" in stages.status(fewer, ["07_eval"])[0].reasons

    messages.clear()
    again = evaluation.run(cfg, log=messages.append)  # switching back: nothing is computed
    assert [m for m in messages if " rows ranked for " not in m] == [] and again.equals(first)


def test_same_seed_gives_identical_recbole_scores_across_runs(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.recbole_epochs": 2})
    prepared = preparation.prepare(cfg)
    samples = prepared.samples[prepared.samples["split"] == "test"].reset_index(drop=True)
    for name in ("DIN", "SASRec"):
        a = table_rows.baseline_scores(cfg, name, prepared, samples)
        b = table_rows.baseline_scores(cfg, name, prepared, samples)
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), name


def test_another_learning_rate_trains_a_new_adapter_that_07_scores_with(tmp_path):
    """sft.learning_rate: a new adapter beside the first, scored by 07; switching back re-uses both."""
    base = {"eval.baselines": [], "eval.llm": ["tallrec"], "sft.max_steps": 2, "sft.save_steps": 2}
    cfg = resolve_config("smoke", tmp_path, base)
    prepare.write(cfg, preparation.prepare(cfg))
    messages: list[str] = []
    first = evaluation.run(cfg, log=messages.append)
    assert any(m.startswith("training the 'none' adapter") for m in messages)
    assert "TALLRec (no summary): scoring 6 users" in messages

    messages.clear()
    other = with_overrides(cfg, {"sft.learning_rate": 0.0001})
    evaluation.run(other, log=messages.append)
    assert any(m.startswith("training the 'none' adapter") for m in messages)
    assert "TALLRec (no summary): scoring 6 users" in messages
    adapters = [p for p in (tmp_path / "06_sft").iterdir() if stages.record(p)]
    assert len(adapters) == 2  # side by side

    messages.clear()
    again = evaluation.run(cfg, log=messages.append)
    assert [m for m in messages if " rows ranked for " not in m] == [] and again.equals(first)  # only the closing line


def test_sft_seeds_train_one_adapter_per_seed_and_the_table_averages_them(tmp_path):
    """eval.sft_seeds 2: a second adapter (sft.seed_offset 1) beside the first, both scored; the row is their mean
    with a spread, and the paired test compares each user's hit rate averaged over the seeds."""
    from trsr_utils.method import metrics, significance

    base = {"eval.baselines": ["popularity"], "eval.all_interactions": [], "eval.llm": ["tallrec"],
            "sft.max_steps": 2, "sft.save_steps": 2, "sft.learning_rate": 0.05}
    cfg = resolve_config("smoke", tmp_path, base)
    prepare.write(cfg, preparation.prepare(cfg))
    evaluation.run(cfg, log=lambda *_: None)
    messages: list[str] = []
    two = with_overrides(cfg, {"eval.sft_seeds": 2})
    table = evaluation.run(two, log=messages.append).set_index("system")
    # seed 0 is the adapter the first run trained: only the second seed's adapter is new
    assert sum(m.startswith("training the 'none' adapter (SFT seed 1)") for m in messages) == 1
    assert not any(m.startswith("training the 'none' adapter for") for m in messages)
    assert len([p for p in (tmp_path / "06_sft").iterdir() if stages.record(p)]) == 2
    ranks = evaluation.read_ranks(two, all_seeds=True)
    runs = [ranks[(ranks.system == "tallrec") & (ranks.seed == i)]["rank"].to_numpy() for i in (0, 1)]
    per_seed = [metrics.metrics_from_ranks(r)["recall@10"] for r in runs]
    assert table.loc["tallrec", "seeds"] == 2 and table.loc["popularity", "seeds"] == 1
    assert table.loc["tallrec", "recall@10"] == pytest.approx(np.mean(per_seed))
    assert table.loc["tallrec", "recall@10_sd"] == pytest.approx(np.std(per_seed, ddof=1), nan_ok=True)
    assert len(evaluation.read_ranks(two)) == 2 * 6  # the first seed's ranks: one row per system and user
    paired = significance.compare(ranks, [("tallrec", "popularity")], ["recall@10"], n_resamples=99)
    hits = np.mean([metrics.per_user(r, "recall@10") for r in runs], axis=0)
    assert paired.iloc[0]["mean_a"] == pytest.approx(hits.mean())


def test_bf16_scoring_is_checked_against_the_models_own_precision(tmp_path):
    """model.scoring_dtype bfloat16: the LLM row is scored by a bf16 copy, and once more in float32 for the check;
    a second run re-uses both; the profile's precision has its own adapter folder and scores."""
    base = {"eval.baselines": [], "eval.llm": ["tallrec"], "sft.max_steps": 2, "sft.save_steps": 2,
            "model.scoring_dtype": "bfloat16"}
    cfg = resolve_config("smoke", tmp_path, base)
    prepare.write(cfg, preparation.prepare(cfg))
    messages: list[str] = []
    evaluation.run(cfg, log=messages.append)
    assert any("scoring 6 users again in float32 (the reference for bfloat16)" in m for m in messages)
    q = evaluation.read_precision(cfg)
    assert q["system"] == "tallrec" and q["users"] == 6 and 0 <= q["users_rank_changed"] <= 6
    assert 0 < q["max_abs_p_difference"] < 0.05 and q["reference"] == "float32"
    messages.clear()
    evaluation.run(cfg, log=messages.append)
    assert [m for m in messages if " rows ranked for " not in m] == []  # both scorings come from the store
