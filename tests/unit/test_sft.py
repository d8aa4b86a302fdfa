"""LoRA SFT with the tiny model: masking, learning, save/reload equality, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import hostile_hf_home
from trsr_utils.method import llm, metrics, prompts, scoring
from trsr_utils import stages
from trsr_utils.stages.sft import for_split
from trsr_utils.core.config import resolve_config
from trsr_utils.data import preparation
from trsr_utils.method import lora
from trsr_utils.report import training_readings
from trsr_utils.stages import prepare, sft

BASE = {"sft.summary": "none", "data.n_train": 3, "data.n_valid": 2, "data.n_test": 0, "sft.batch_size": 2,
        "sft.grad_accum": 1, "sft.logging_steps": 1, "prompt.max_length": 400,
        "sft.shared_prefix": False}  # one example per candidate unless a test says otherwise


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sft-run")
    cfg = resolve_config("smoke", run, BASE)
    prepare.write(cfg, preparation.prepare(cfg))
    return run


def cfg_at(run, **over):
    return resolve_config("smoke", run, {**BASE, **over})


@pytest.fixture(scope="module")
def tok():
    return llm.load_tokenizer(llm.TINY)


def test_answer_only_labels_cover_exactly_the_answer(prepared_run, tok):
    cfg = cfg_at(prepared_run)
    samples, built = for_split(cfg, "train", "none", tok)
    answer = prompts.answer_tokens(tok, built[0].suffixes[0])
    examples = lora.examples_from_prompts(built, answer, "answer", list(samples["user_id"]))
    assert len(examples) == 3 * 2  # 1 positive + 1 negative per training user
    for e in examples:
        assert len(e["input_ids"]) == len(e["labels"])
        kept = [(i, t) for i, t in enumerate(e["labels"]) if t != lora.IGNORE]
        assert kept == [(len(e["input_ids"]) - 1, answer.yes_id if e["label"] else answer.no_id)]
    first = built[0]
    assert examples[0]["input_ids"] == first.prefix_ids + first.suffix_ids[0] + [answer.yes_id]
    assert examples[1]["input_ids"][-1] == answer.no_id and examples[1]["label"] == 0
    whole = lora.examples_from_prompts(built, answer, "whole")
    assert all(e["labels"] == e["input_ids"] for e in whole)
    with pytest.raises(ValueError, match="answer"):
        lora.examples_from_prompts(built, answer, "prompt")


def test_missing_summaries_are_named(prepared_run, tok):
    with pytest.raises(FileNotFoundError, match="03_hierarchical"):
        for_split(cfg_at(prepared_run), "train", "hierarchical", tok)


def test_training_lowers_the_loss_and_keeps_the_best_adapter(tmp_path, prepared_run, tok):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    settings = {"sft.max_steps": 12, "sft.save_steps": 6, "sft.learning_rate": 5e-3}
    cfg = cfg_at(run, **settings)
    report = sft.train(cfg, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=lambda *_: None)
    losses = [h["loss"] for h in report["loss_history"]]
    assert len(losses) >= 6 and np.mean(losses[-3:]) < np.mean(losses[:3])  # same 6 examples, repeated
    assert [v["step"] for v in report["validation"]] == [0, 6, 12]
    assert report["best"]["step"] in (6, 12)
    assert report["best"]["selection"] == max(v["selection"] for v in report["validation"][1:])
    assert 0 < report["parameters"]["trainable"] < report["parameters"]["total"] / 10
    folder = stages.result_dir(cfg, sft.STAGE)
    assert (folder / "adapter" / "adapter_model.safetensors").exists() and stages.is_complete(cfg, sft.STAGE)
    assert report["examples_per_second"] > 0 and report["peak_memory_mb"] > 0
    # every validation stores its candidates' p(yes); the selected step's are the saved adapter's (notebook 06's AUC)
    validator = sft.checkpoint_validator(cfg, tok)
    again_scored = validator.scores(sft.load_adapter(cfg, base=llm.load_model(llm.TINY, device="cpu")))
    assert len(report["best"]["p_yes"]) == len(again_scored)
    for stored, now in zip(report["best"]["p_yes"], again_scored):
        assert np.allclose(stored, now, atol=1e-6)

    # Killed after checkpoint 6: no completion record, no adapter, no last checkpoint. Nothing accepts the folder as
    # finished; the same settings resume from checkpoint 6, keeping the validations already done.
    for name in ("stage.json", "report.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "adapter")
    shutil.rmtree(folder / "checkpoints" / "checkpoint-12")
    assert not stages.is_complete(cfg, sft.STAGE)
    with pytest.raises(FileNotFoundError, match="unfinished"):
        sft.read_report(cfg)
    again = sft.train(cfg, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=lambda *_: None)
    assert again["resumed_from"].endswith("checkpoint-6")
    assert again["global_step"] == 12 and again["steps_this_run"] == 6
    assert [v["step"] for v in again["validation"]] == [0, 6, 12]


def test_other_settings_train_a_new_adapter_and_switching_back_reuses_the_first(tmp_path, prepared_run, tok):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    first = cfg_at(run, **{"sft.max_steps": 2, "sft.save_steps": 2})
    sft.train(first, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=lambda *_: None)
    weights = sft.adapter_digest(stages.result_dir(first, sft.STAGE) / "adapter")

    other = cfg_at(run, **{"sft.max_steps": 2, "sft.save_steps": 2, "sft.learning_rate": 1e-5})
    messages = []
    report = sft.train(other, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=messages.append)
    assert report["resumed_from"] is None and report["steps_this_run"] == 2  # trained, never "resumed"
    assert stages.result_dir(other, sft.STAGE) != stages.result_dir(first, sft.STAGE)
    assert sft.adapter_digest(stages.result_dir(first, sft.STAGE) / "adapter") == weights  # the first one is kept

    messages.clear()
    back = sft.train(first, tokenizer=tok, log=messages.append)  # no model given: re-use must not need one
    assert any("re-using the adapter" in m for m in messages) and back["global_step"] == 2
    assert back["reused"] and back["steps_this_run"] == 0  # this call trained nothing
    # a copied run directory reports the adapter where it lies now, not where it was trained
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    there = sft.train(cfg_at(moved, **{"sft.max_steps": 2, "sft.save_steps": 2}), tokenizer=tok, log=lambda *_: None)
    assert there["reused"] and there["adapter"].startswith(str(moved))
    assert sft.adapter_digest(stages.result_dir(first, sft.STAGE) / "adapter") == weights


def test_saved_adapter_scores_identically_after_reload(tmp_path, prepared_run, tok):
    cfg = cfg_at(prepared_run)
    torch.manual_seed(0)
    model = lora.with_lora(cfg, llm.load_model(llm.TINY, device="cpu"))
    with torch.no_grad():  # a fresh LoRA adapter is a no-op (B = 0): give it weights that change the output
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    samples, built = for_split(cfg, "valid", "none", tok)
    answer = prompts.answer_tokens(tok, built[0].suffixes[0])
    before = np.concatenate(scoring.score_users(model, built, answer))
    full = scoring.score_full(model, [p.full_ids(i) for p in built for i in range(len(p.suffix_ids))], answer)
    assert np.abs(before - full).max() < 1e-4  # prefix sharing holds with a LoRA adapter too
    base_only = np.concatenate(scoring.score_users(llm.load_model(llm.TINY, device="cpu"), built, answer))
    assert np.abs(before - base_only).max() > 1e-3  # the adapter matters
    model.save_pretrained(tmp_path / "adapter")
    reloaded = sft.load_adapter(cfg, tmp_path / "adapter", base=llm.load_model(llm.TINY, device="cpu"))
    after = np.concatenate(scoring.score_users(reloaded, built, answer))
    assert np.abs(before - after).max() < 1e-6


def test_multi_gpu_launch_command(tmp_path):
    """--gpus N: torchrun DDP by default (LoRA's few million parameters need no ZeRO sharding); --deepspeed:
    accelerate + the shipped ZeRO-2 config."""
    cmd = sft.launch_command("paper-mind", "/runs/x", ["sft.epochs=2"], 8)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "8"]
    assert cmd[-9:] == ["-m", "trsr_utils", "sft", "--profile", "paper-mind", "--run-dir", "/runs/x", "--set",
                        "sft.epochs=2"]
    ds = sft.launch_command("paper-mind", str(tmp_path), ["sft.epochs=2"], 8, deepspeed=True)
    assert ds[1:3] == ["-m", "accelerate.commands.launch"] and ds[ds.index("--num_processes") + 1] == "8"
    assert str(lora.DEEPSPEED_ZERO2) in ds and lora.DEEPSPEED_ZERO2.exists()


def test_a_users_accelerate_default_config_cannot_stop_the_deepspeed_launch(tmp_path, monkeypatch):
    """A default_config.yaml in the user's accelerate cache (here: multi-GPU, fp16, as `accelerate config` writes
    on shared clusters) makes accelerate refuse a DeepSpeed config file beside it. The launch names its own
    accelerate config, so the user's is never read: accelerate's own checks and DeepSpeedPlugin accept it."""
    import os

    from accelerate.commands import launch
    from accelerate.commands.config import config_args
    from accelerate.utils import DeepSpeedPlugin, prepare_deepspeed_cmd_env

    users = hostile_hf_home(tmp_path / "home")
    for module in (launch, config_args):  # where accelerate looks (HF_HOME, read when accelerate is imported)
        monkeypatch.setattr(module, "default_config_file", str(users))
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")

    def plugin_for(cmd: list[str]) -> None:
        """What `accelerate launch` does up to the DeepSpeed plugin each process builds (launch.launch_command)."""
        args = launch.launch_command_parser().parse_args(cmd[cmd.index("accelerate.commands.launch") + 1:])
        args, defaults, mixed_precision_from_config = launch._validate_launch_command(args)
        fields = list(defaults.deepspeed_config) if defaults else []
        args.deepspeed_fields_from_accelerate_config = ",".join(fields + ["mixed_precision"] * mixed_precision_from_config)
        _, env = prepare_deepspeed_cmd_env(args)
        with monkeypatch.context() as m:
            for key, value in env.items():
                if key not in os.environ or os.environ[key] != value:
                    m.setenv(key, value)
            DeepSpeedPlugin(hf_ds_config=str(lora.DEEPSPEED_ZERO2))

    cmd = sft.launch_command("smoke", str(tmp_path / "run"), [], 2, deepspeed=True)
    plugin_for(cmd)  # ours: accepted
    at = cmd.index("--config_file")
    with pytest.raises(ValueError, match="will be ignored"):  # without it, the user's config is read and refused
        plugin_for(cmd[:at] + cmd[at + 2:])


@pytest.mark.parametrize("loss", ["answer", "yes_no"])
def test_answer_only_loss_equals_the_models_own_loss(tmp_path, prepared_run, tok, loss):
    from datasets import Dataset

    cfg = cfg_at(prepared_run, **{"sft.loss": loss})
    model = lora.with_lora(cfg, llm.load_model(llm.TINY, device="cpu"))
    examples = sft.training_examples(cfg, tok)[:3]
    answer = prompts.answer_tokens(tok, "\n")
    lora.install_answer_loss(model, loss, answer, bf16=False)
    trainer = lora.trainer_class(loss)(
        model=model, args=lora.training_arguments(cfg, tmp_path / "ckpt", "cpu"), processing_class=tok,
        train_dataset=Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]))
    batch = trainer.data_collator([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
    model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch)).item()
        lora.remove_answer_loss(model)  # the model's own forward again
        if loss == "answer":
            reference = model(**batch).loss.item()  # HF's own shifted cross-entropy over all labelled tokens
        else:
            logits = torch.stack([model(input_ids=torch.tensor([e["input_ids"][:-1]])).logits[0, -1]
                                  for e in examples])
            p_yes = torch.softmax(logits[:, [answer.yes_id, answer.no_id]], -1)[:, 0]
            truth = torch.tensor([float(e["label"]) for e in examples])
            reference = torch.nn.functional.binary_cross_entropy(p_yes, truth).item()
    assert ours == pytest.approx(reference, rel=1e-4)


def test_reading_relates_the_loss_to_the_prior_and_users_to_the_scores():
    report = {"loss": "answer", "loss_history": [{"step": 1, "loss": 2.1}, {"step": 32, "loss": 0.70}],
              "zero_shot": {"selection": 1 / 3}, "best": {"step": 32, "selection": 1.0}}
    text = "\n".join(training_readings.reading(report, 6))
    assert "ln 2 = 0.693" in text and "the loss alone does not show that it learned more than the prior" in text
    assert "one user moves each Recall@K by 0.167" in text and "difference of +0.667" in text
    report["loss_history"][-1]["loss"] = 0.3
    assert "separates positives from negatives" in "\n".join(training_readings.reading(report, 6))
    # 1 positive : 3 negatives: the prior's loss is H(1/4) = 0.562, not ln 2
    report.update(examples=600, positives=150, loss_history=[{"step": 75, "loss": 0.53}])
    text = "\n".join(training_readings.reading(report, 20))
    assert "H(0.25) = 0.562" in text and "probability 0.25" in text and "loss alone does not show" in text
    # two checkpoints tie: the earlier is kept, and a selection below zero-shot is said
    report.update(zero_shot={"selection": 2.5}, best={"step": 12, "selection": 1.5},
                  validation=[{"step": 0, "selection": 2.5}, {"step": 12, "selection": 1.5},
                              {"step": 24, "selection": 1.5}])
    text = "\n".join(training_readings.reading(report, 6))
    assert "steps 12, 24 tie at 1.500; the earliest, step 12, is kept" in text and "below zero-shot" in text
    # no tie: the rule is said all the same (the demo's best and last are one step)
    one = dict(report, validation=report["validation"][:2])
    text = "\n".join(training_readings.reading(one, 6))
    assert "keeps the best-scoring checkpoint (`sft.select: best`): step 12, at 1.500" in text
    assert "step 0, the zero-shot model at 2.500, is never chosen" in text
    # sft.select: last keeps the final checkpoint: said so, not "the earliest" (course-long-all's 06 read that)
    last = dict(report, select="last", best={"step": 24, "selection": 1.5},
                validation=report["validation"] + [{"step": 36, "selection": 2.0}, {"step": 48, "selection": 1.5}])
    last["best"] = {"step": 48, "selection": 1.5}
    text = "\n".join(training_readings.reading(last, 6))
    assert "keeps the last checkpoint (`sft.select: last`), step 48" in text and "earliest" not in text
    assert "the same as steps 12, 24" in text and "the best was 2.000 at step 36" in text
    # the rule itself, as sft.train applies it: best (ties: the earlier step) or last
    records = last["validation"][1:]
    assert metrics.chosen_checkpoint(records)["step"] == 36 and metrics.chosen_checkpoint(records, "last")["step"] == 48
    assert metrics.chosen_checkpoint(records[:2])["step"] == 12  # 12 and 24 tie: the earlier
    # against chance: only the rows below a random order's Recall@10 are named
    report.update(zero_shot={"selection": 2.5, "recall@10": 0.5}, best={"step": 12, "selection": 1.5,
                                                                       "recall@10": 1 / 3})
    text = "\n".join(training_readings.reading(report, 6, random_recall10=10 / 21))
    assert "0.333 selected, 0.500 zero-shot; a random order reaches 0.476" in text
    assert "the selected checkpoint is below chance here, on 6 users" in text


@pytest.mark.parametrize("loss", ["answer", "yes_no"])
def test_shared_prefix_loss_and_gradient_equal_one_example_per_candidate(tmp_path, prepared_run, tok, loss):
    """One prefix forward per user, the loss on each candidate's answer: the same loss and the same gradient as
    every candidate's full prompt run on its own (the shared keys and values carry the gradient to the prefix)."""
    from datasets import Dataset

    results = {}
    for shared in (False, True):
        cfg = cfg_at(prepared_run, **{"sft.loss": loss, "sft.shared_prefix": shared})
        torch.manual_seed(0)
        model = lora.with_lora(cfg, llm.load_model(llm.TINY, device="cpu"))
        for name, p in model.named_parameters():  # lora_B starts at zero: give the adapter a gradient path
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(len(name)))
        examples = sft.training_examples(cfg, tok)
        columns = ("prefix_ids", "suffix_ids", "targets") if shared else ("input_ids", "labels")
        rows = [{c: e[c] for c in columns} for e in examples]
        lora.install_answer_loss(model, loss, prompts.answer_tokens(tok, "\n"), bf16=False)
        trainer = lora.trainer_class(loss)(
            model=model, args=lora.training_arguments(cfg, tmp_path / f"ckpt{shared}", "cpu"), processing_class=tok,
            train_dataset=Dataset.from_list(rows),
            data_collator=lora.shared_prefix_collator(tok.pad_token_id or 0) if shared else None)
        batch = trainer.data_collator(rows)
        model.eval()  # no dropout: both paths see the same function
        value = trainer.compute_loss(model, dict(batch))
        value.backward()
        grad = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "lora_A" in n])
        results[shared] = (value.item(), grad, len(rows))
    (one, g_one, n_one), (many, g_many, n_users) = results[False], results[True]
    assert n_users == 3 and n_one == 6  # 3 training users x (positive + 1 negative)
    assert many == pytest.approx(one, rel=1e-5)
    assert torch.allclose(g_many, g_one, rtol=1e-4, atol=1e-7) and g_one.abs().max() > 0


def test_shared_prefix_and_bf16_autocast_train_and_report(tmp_path, prepared_run, tok):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    cfg = cfg_at(run, **{"sft.max_steps": 2, "sft.save_steps": 2, "sft.shared_prefix": True,
                         "sft.mixed_precision": "bfloat16", "sft.batch_size": 2})
    assert lora.training_arguments(cfg, tmp_path / "x", "cpu").bf16
    report = sft.train(cfg, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=lambda *_: None)
    assert report["shared_prefix"] and report["users"] == 3 and report["examples"] == 6
    assert report["global_step"] == 2 and np.isfinite(report["train_loss"])
    from trsr_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="sft.shared_prefix learns the answers only"):
        cfg_at(run, **{"sft.shared_prefix": True, "sft.loss": "whole"})


def test_bf16_scoring_is_a_copy_and_close_to_float32(prepared_run, tok):
    model = llm.load_model(llm.TINY, device="cpu")
    assert scoring.for_scoring(model, None) is model and scoring.for_scoring(model, "float32") is model
    cheap = scoring.for_scoring(model, "bfloat16")
    assert next(cheap.parameters()).dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    cfg = cfg_at(prepared_run)
    _, users = for_split(cfg, "train", "none", tok)
    answer = prompts.answer_tokens(tok, users[0].suffixes[0])
    full = np.concatenate(scoring.score_users(model, users, answer, pad_id=tok.pad_token_id or 0))
    low = np.concatenate(scoring.score_users(cheap, users, answer, pad_id=tok.pad_token_id or 0))
    assert low.dtype == np.float64 and 0 < np.abs(full - low).max() < 0.05
    from trsr_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="model.scoring_dtype needs unquantized weights"):
        cfg_at(prepared_run, **{"model.scoring_dtype": "bfloat16", "model.quantization": "4bit"})


def test_every_trainer_is_pinned_to_one_gpu_when_one_process_sees_several(monkeypatch, tmp_path):
    """One process on an 8-GPU node: left alone, the Trainer wraps the model in nn.DataParallel (n_gpu = 8) and
    the answer loss runs on cuda:0 with inputs on the others. The pin lives where every Trainer's arguments are
    built (lora.training_arguments), so the pointwise and the listwise trainers (notebook 09) both get it."""
    import torch

    from trsr_utils.method import listwise

    cfg = resolve_config("smoke", tmp_path)
    model, tok = llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)  # before CUDA is faked
    assert lora.training_arguments(cfg, tmp_path / "a", "cuda").n_gpu != 8  # the unpinned value here: no GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert lora.training_arguments(cfg, tmp_path / "b", "cuda").n_gpu == 1
    assert lora.training_arguments(cfg, tmp_path / "c", "cpu").n_gpu == 0  # a CPU run is left as it is
    seen = []
    monkeypatch.setattr(lora, "pin_one_gpu", lambda args, device: seen.append(device) or False)
    monkeypatch.setattr(llm, "resolve_device", lambda device: "cuda")

    class Stop(Exception):
        pass

    def trainer_class(loss):
        def build(**kwargs):
            raise Stop

        return build

    monkeypatch.setattr(lora, "trainer_class", trainer_class)
    with pytest.raises(Stop):  # the listwise trainer's arguments came through the pin before it was built
        listwise.train(cfg, model, tok, [{"input_ids": [1, 2, 3], "labels": [-100, -100, 3]}], tmp_path / "lw", log=lambda *_: None)
    assert seen == ["cuda"]


def test_select_last_keeps_the_final_checkpoint_whatever_validation_says(tmp_path, prepared_run, tok):
    """sft.select: last is a fixed training budget (the best on a few validation users is partly chance): the
    adapter is the last checkpoint's, the report says so, and it is another result than the paper's rule."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    settings = {"sft.max_steps": 4, "sft.save_steps": 2, "sft.learning_rate": 5e-3}
    last = cfg_at(run, **settings, **{"sft.select": "last"})
    assert stages.fingerprint(last, sft.STAGE).digest != stages.fingerprint(cfg_at(run, **settings), sft.STAGE).digest
    report = sft.train(last, model=llm.load_model(llm.TINY, device="cpu"), tokenizer=tok, log=lambda *_: None)
    assert report["select"] == "last" and report["best"]["step"] == 4 == report["global_step"]
    assert [v["step"] for v in report["validation"]] == [0, 2, 4]  # validated all the same: the curve is drawn
    assert sft.selected_step(last, "none") == (4, 4)  # BASE trains without a summary (TALLRec)
