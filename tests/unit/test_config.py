from pathlib import Path

import pytest

from trsr_utils.core.config import ConfigError, available_profiles, resolve_config


def test_all_shipped_profiles_resolve():
    names = available_profiles()
    assert {"smoke", "demo", "paper-mind", "paper-amazon"} <= set(names)
    for name in names:
        cfg = resolve_config(name, run_dir="/tmp/x")
        assert cfg.profile == name
        assert Path(cfg.run_dir).is_absolute()


def test_extends_merges_nested_sections():
    smoke = resolve_config("smoke")
    demo = resolve_config("demo")
    assert smoke.data.dataset == demo.data.dataset == "movielens-100k"
    assert smoke.data.long_history == "keep_recent" and demo.data.long_history == "drop"  # smoke overrides demo
    assert smoke.data.n_train < demo.data.n_train
    assert smoke.model.summarizer == "tiny-random"
    amazon = resolve_config("paper-amazon")
    assert amazon.data.dataset == "amazon-m2" and amazon.data.n_train == 10_000  # from paper-mind


def test_default_run_dir_is_runs_profile():
    assert resolve_config("smoke").run_dir.endswith("runs/smoke")


def test_dotted_and_nested_overrides():
    cfg = resolve_config("demo", overrides={"data.n_train": 7, "chunking": {"items_per_block": 3}, "seed": 5})
    assert (cfg.data.n_train, cfg.chunking.items_per_block, cfg.seed) == (7, 3, 5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.n_trian": 5}, "unknown configuration key 'data.n_trian'; did you mean 'data.n_train'"),
        ({"dataa": {}}, "unknown configuration key 'dataa'; did you mean 'data'"),
        ({"data.n_train": "many"}, "data.n_train must be an integer"),
        ({"data.dataset": "netflix"}, "data.dataset must be one of"),
        ({"data.long_history": "cut"}, "data.long_history must be one of"),
        ({"data.min_interactions": 30}, "must be >= 1 and <="),
        ({"data.negative_source": "impressions"}, "only for dataset 'mind'"),
        ({"text.include_abstract": "yes"}, "must be true or false"),
    ],
)
def test_bad_values_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config("demo", overrides=overrides)


def test_unknown_profile_lists_available():
    with pytest.raises(ConfigError, match="unknown profile 'nope'; available: .*demo"):
        resolve_config("nope")


def test_profile_file_path_and_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: smoke\ndata:\n  n_test: 3\n")
    assert resolve_config(str(path)).data.n_test == 3
    path.write_text("data:\n  min_history: 3\n")
    with pytest.raises(ConfigError, match="unknown configuration key 'data.min_history'"):
        resolve_config(str(path))


def test_with_overrides_is_validated_like_a_profile_and_leaves_the_original_alone(tmp_path):
    from trsr_utils.core.config import with_overrides

    cfg = resolve_config("smoke", tmp_path, {})
    new = with_overrides(cfg, {"prompt.recent_items": 1, "sft.summary": "none"}, tmp_path / "cell")
    assert (new.prompt.recent_items, new.sft.summary, new.run_dir) == (1, "none", str((tmp_path / "cell").resolve()))
    assert (cfg.prompt.recent_items, cfg.sft.summary, cfg.run_dir) == (3, "hierarchical", str(tmp_path.resolve()))
    assert with_overrides(cfg, {}).to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="did you mean 'prompt.recent_items'"):
        with_overrides(cfg, {"prompt.recent_item": 1})
    with pytest.raises(ConfigError, match="sft.summary must be one of"):
        with_overrides(cfg, {"sft.summary": "flat"})


@pytest.mark.parametrize("key, value", [("beyond.orders", 0), ("beyond.orders", 51), ("beyond.retrieve", 27),
                                        ("beyond.users", -1), ("beyond.rerank_order", "random")])
def test_beyond_settings_outside_their_range_are_refused(key, value):
    with pytest.raises(ConfigError, match=key.split(".")[1] if key != "beyond.rerank_order" else "rerank_order"):
        resolve_config("smoke", overrides={key: value})


def test_the_upstream_protocol_sets_its_settings_and_refuses_an_override_against_them(tmp_path):
    from trsr_utils.core.config import ConfigError, UPSTREAM, UPSTREAM_MIND, resolve_config, with_overrides

    cfg = resolve_config("demo", tmp_path, {"eval.protocol": "upstream"})  # the demo shares a prefix: replaced
    assert {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in UPSTREAM} == UPSTREAM == {
        "data.negative_source": "upstream", "data.train_negatives": 1, "data.eval_negatives": 20,
        "text.include_abstract": False, "sft.loss": "whole", "sft.shared_prefix": False}
    assert cfg.data.mind_sequence == "history+clicks"  # MovieLens has no impressions
    mind = resolve_config("smoke-mind", tmp_path, {"eval.protocol": "upstream"})  # its impressions: replaced
    assert mind.data.mind_sequence == UPSTREAM_MIND["data.mind_sequence"] and mind.data.negative_source == "upstream"
    with pytest.raises(ConfigError, match="upstream sets sft.loss to 'whole'; the override asks for 'answer'"):
        resolve_config("smoke", tmp_path, {"eval.protocol": "upstream", "sft.loss": "answer"})
    with pytest.raises(ConfigError, match="sets data.negative_source"):
        with_overrides(cfg, {"data.negative_source": "uniform"})
    assert with_overrides(cfg, {"data.n_test": 3}).sft.loss == "whole"
    # leaving MIND leaves its history-only sequences behind; going back to "ours" by an override is refused
    assert with_overrides(mind, {"data.dataset": "movielens-100k", "data.source_dir": None}).data.mind_sequence == \
        "history+clicks"
    with pytest.raises(ConfigError, match="resolve the profile again"):
        with_overrides(cfg, {"eval.protocol": "ours"})
    with pytest.raises(ConfigError, match="only for dataset 'mind'"):
        resolve_config("smoke", tmp_path, {"data.mind_sequence": "history"})
    with pytest.raises(ConfigError, match="needs the impression clicks"):
        resolve_config("smoke-mind", tmp_path, {"data.mind_sequence": "history"})
