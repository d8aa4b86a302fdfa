"""Listwise ranking: the letter verbalizer, one forward pass per prompt, candidate orders, position bias, training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trsr_utils.method import listwise, llm, prompts, text
from trsr_utils.method.scoring import decoder_and_head

SUMMARY = "This user enjoys tense crime dramas and 1990s thrillers. " * 4


@pytest.fixture(scope="module")
def tiny():
    return llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)


def movie(i: int) -> str:
    return f"title: Movie number {i}" + " extended" * (i % 3) + "; genres: Drama"


def test_listwise_prompt_labels_every_candidate_and_asks_for_a_letter():
    messages = prompts.listwise_messages("S.", ["r1", "r2"], ["c1", "c2", "c3"], "movies")
    body = messages[1]["content"]
    assert "A. c1\nB. c2\nC. c3" in body and "(A-C)" in body and "Preference summary: S." in body
    assert "- r1\n- r2" in body
    assert "summary" not in prompts.listwise_messages(None, [], ["c"], "news")[1]["content"].split("\n")[0]
    with pytest.raises(ValueError, match="A-Z"):
        prompts.listwise_messages(None, [], ["c"] * 27, "movies")


def test_letters_are_single_distinct_tokens_or_the_tokenizer_is_refused(smol_tokenizer, char_tokenizer):
    ids = prompts.letter_tokens(smol_tokenizer, 26)
    assert len(set(ids)) == 26 and all(smol_tokenizer.decode([i]) == L for i, L in zip(ids, prompts.LETTERS))
    # After text that does not end in whitespace the letter comes with a space, as "Yes" does.
    spaced = prompts.letter_tokens(smol_tokenizer, 3, "Answer:")
    assert [smol_tokenizer.decode([i]) for i in spaced] == [" A", " B", " C"]
    with pytest.raises(ValueError, match="splits the letter"):
        prompts.letter_tokens(char_tokenizer, 2, "Answer:")  # " A" is two characters, two tokens


def test_listwise_fitting_cuts_summary_then_recent_items_never_a_candidate(smol_tokenizer):
    cands, recent = [movie(i) for i in range(21)], [movie(100 + i) for i in range(5)]
    roomy = prompts.ListwisePrompter(smol_tokenizer, "movies", 4096, 1000).build_list(SUMMARY, recent, cands)
    assert roomy.summary_tokens_cut == 0 and roomy.recent_items_dropped == 0 and roomy.n_candidates == 21
    assert roomy.ids == smol_tokenizer.encode(roomy.text, add_special_tokens=False)
    tight = prompts.ListwisePrompter(smol_tokenizer, "movies", len(roomy.ids) + 1 - 10, 1000)
    up = tight.build_list(SUMMARY, recent, cands)
    assert 0 < up.summary_tokens_cut and up.recent_items_dropped == 0 and len(up.ids) + 1 <= tight.max_length
    bare = prompts.ListwisePrompter(smol_tokenizer, "movies", 4096, 1000).build_list(None, recent, cands)
    tighter = prompts.ListwisePrompter(smol_tokenizer, "movies", len(bare.ids) + 1 - 5, 1000)
    up = tighter.build_list(SUMMARY, recent, cands)
    assert up.recent_items_dropped >= 1 and recent[-1] in up.text and recent[0] not in up.text
    assert all(f"{prompts.LETTERS[i]}. {c}" in up.text for i, c in enumerate(cands))
    with pytest.raises(ValueError, match="prompt.max_length=100"):  # 21 one-token candidates do not fit in 100
        prompts.ListwisePrompter(smol_tokenizer, "movies", 100).build_list(None, [], cands)


def test_long_candidates_are_cut_to_one_budget_each_instead_of_stopping(smol_tokenizer):
    """Amazon-M2's product texts: 21 lines of ~100 tokens do not fit in 1024 tokens. Every line is cut to the same
    number of tokens, the largest that leaves the summary (at summary_max_tokens) and the recent items in place;
    the prompt records the cap and how many lines it shortened."""
    long = [f"title: Product {i}; desc: " + f"a durable cable number {i} for chargers, " * 10 for i in range(21)]
    recent = ["title: Phone case; desc: blue"] * 3
    for tok in (smol_tokenizer, llm.load_tokenizer(llm.TINY_LLAMA2)):  # chat template; plain layout with BOS
        prompter = prompts.ListwisePrompter(tok, "products", 1024, 256)
        p = prompter.build_list(SUMMARY, recent, long)
        assert len(p.ids) + 1 <= 1024 and p.ids == llm.encode_prompt(tok, p.text)
        assert p.summary_tokens_cut == 0 and p.recent_items_dropped == 0 and SUMMARY in p.text
        assert p.candidates_cut == 21 and 10 < p.candidate_token_cap < 100
        lines = [line for line in p.text.splitlines() if line[:3] in {f"{x}. " for x in prompts.LETTERS}]
        assert len(lines) == 21 and all(line.endswith("…") for line in lines)
        assert all(len(tok.encode(line[3:], add_special_tokens=False)) <= p.candidate_token_cap for line in lines)
        # the largest such cap: one token more per line and the prompt would not fit
        assert prompter.candidate_cap(SUMMARY, recent, long) == p.candidate_token_cap
        wider = [text.cap_tokens(c, tok, p.candidate_token_cap + 1) for c in long]
        assert len(llm.encode_prompt(tok, prompts.render(tok, prompts.listwise_messages(
            SUMMARY, recent, wider, "products")))) + 1 > 1024
    short = prompts.ListwisePrompter(smol_tokenizer, "movies", 4096).build_list(SUMMARY, recent, long[:3])
    assert short.candidate_token_cap == 0 and short.candidates_cut == 0  # nothing cut when everything fits


def test_orders_are_seeded_per_user_and_map_back_to_candidates():
    a = listwise.orders(["u1", "u2", "u3"], 21, 3, seed=0)
    b = listwise.orders(["u3", "u1"], 21, 3, seed=0)
    assert all(np.array_equal(a[o][0], b[o][1]) and np.array_equal(a[o][2], b[o][0]) for o in range(3))
    assert not np.array_equal(a[0][0], a[1][0]) and sorted(a[0][0]) == list(range(21))
    assert not np.array_equal(a[0][0], listwise.orders(["u1"], 21, 1, seed=1)[0][0])
    perm = np.array([2, 0, 1])  # A shows candidate 2, B candidate 0, C candidate 1
    assert listwise.to_candidates(np.array([-1.0, -2.0, -3.0]), perm).tolist() == [-2.0, -3.0, -1.0]
    per_order = [[np.array([0.0, -1.0])], [np.array([-2.0, -1.0])]]
    assert listwise.order_averaged(per_order)[0].tolist() == [-1.0, -1.0]


def test_letter_logprobs_equal_one_full_forward_per_prompt(tiny, smol_tokenizer):
    import torch

    model, tok = tiny
    prompter = prompts.ListwisePrompter(tok, "movies", 2048)
    lists = [prompter.build_list(SUMMARY if u % 2 else None, [movie(50 + u)] * (u % 3),
                                 [movie(u * 30 + c) for c in range(5 + u * 4)]) for u in range(4)]
    letters = listwise.letters_for(tok, lists)
    batched = listwise.letter_logprobs(model, lists, letters, batch_size=3, pad_id=tok.pad_token_id or 0)
    decoder, head = decoder_and_head(model)
    for p, got in zip(lists, batched):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p.ids])).logits[0, -1]
        expected = torch.log_softmax(logits[letters[:p.n_candidates]].double(), -1).numpy()
        assert got.shape == (p.n_candidates,) and np.abs(got - expected).max() < 1e-4
        assert abs(np.exp(got).sum() - 1) < 1e-9
    one_by_one = listwise.letter_logprobs(model, lists, letters, batch_size=1, pad_id=tok.pad_token_id or 0)
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(batched, one_by_one))


def test_position_frame_and_bias_measure_how_far_the_positive_moves():
    perms = [[np.array([0, 1, 2]), np.array([1, 0, 2])], [np.array([2, 1, 0]), np.array([1, 0, 2])]]
    # A model that always prefers the letter A (position 0): the first listed candidate wins.
    first_wins = [[listwise.to_candidates(np.array([0.0, -1.0, -2.0]), p) for p in order] for order in perms]
    frame = listwise.position_frame("biased", ["u1", "u2"], first_wins, perms)
    assert frame["position"].tolist() == [0, 1, 2, 1] and frame["rank"].tolist() == [1, 2, 3, 2]
    assert frame["top_position"].tolist() == [0, 0, 0, 0]
    # A model that reads the content only: the positive always wins, wherever it is listed.
    content = [[np.array([0.0, -1.0, -2.0]) for _ in order] for order in perms]
    fair = listwise.position_frame("fair", ["u1", "u2"], content, perms)
    bias = listwise.position_bias(pd.concat([frame, fair]), 3).set_index("system")
    assert bias.loc["biased", "rank_range_mean"] == 1.0 and bias.loc["biased", "users_rank_moved"] == 0.5
    assert bias.loc["biased", "top_is_first"] == 1.0 and bias.loc["biased", "spearman_position_rank"] > 0.9
    assert bias.loc["fair", "rank_range_mean"] == 0.0 and bias.loc["fair", "users_rank_moved"] == 0.0
    assert bias.loc["fair", "uniform_top_share"] == pytest.approx(1 / 3)


def test_training_candidates_match_the_test_prompts_length_and_avoid_the_history():
    from types import SimpleNamespace

    cfg = SimpleNamespace(seed=0, data=SimpleNamespace(eval_negatives=20))
    samples = pd.DataFrame({"user_id": ["a", "b"], "history": [["i1", "i2"], ["i3"]], "positive": ["i4", "i5"],
                            "negatives": [["i6"], ["i7", "i8"]]})
    catalog = [f"i{k}" for k in range(1, 60)]
    got = listwise.training_candidates(cfg, samples, catalog)
    assert [len(c) for c in got] == [21, 21] and [c[0] for c in got] == ["i4", "i5"]
    assert got[0][1] == "i6" and got[1][1:3] == ["i7", "i8"]  # the sampled negatives kept, then topped up
    assert all(len(set(c)) == 21 for c in got) and not {"i1", "i2"} & set(got[0]) and "i3" not in got[1]
    assert got == listwise.training_candidates(cfg, samples, catalog)  # seeded


def test_training_examples_label_only_the_answer_letter():
    p = prompts.ListwisePrompt("t", [5, 6, 7], 3, 0, 0)
    [e] = listwise.training_examples([p], [2], [49, 50, 51])
    assert e["input_ids"] == [5, 6, 7, 51] and e["labels"] == [-100, -100, -100, 51]


def test_listwise_lora_training_moves_the_answer_towards_the_positive_letter(tiny, tmp_path):
    """A few steps of TRL + PEFT on one prompt whose answer is C: p(C) rises; the adapter is saved and reloads."""
    from trsr_utils.core.config import resolve_config
    from trsr_utils.stages.sft import load_adapter

    _, tok = tiny
    model = llm.load_model(llm.TINY, device="cpu")
    cfg = resolve_config("smoke", tmp_path, {"sft.max_steps": 6, "sft.save_steps": 3, "sft.learning_rate": 0.05,
                                             "sft.batch_size": 1, "sft.lora_dropout": 0.0})
    p = prompts.ListwisePrompter(tok, "movies", 1024).build_list(None, [], [movie(c) for c in range(4)])
    letters = listwise.letters_for(tok, [p])
    before = listwise.letter_logprobs(model, [p], letters, shard=False)[0]
    report = listwise.train(cfg, model, tok, listwise.training_examples([p], [2], letters), tmp_path / "lw",
                            log=lambda *_: None)
    assert report["global_step"] == 6 and (tmp_path / "lw" / "report.json").exists()
    tuned = load_adapter(cfg, tmp_path / "lw" / "adapter", llm.load_model(llm.TINY, device="cpu"))
    after = listwise.letter_logprobs(tuned, [p], letters, shard=False)[0]
    assert after[2] > before[2] + 0.5 and int(np.argmax(after)) == 2
    # the base model handed in comes back without LoRA layers
    assert np.abs(listwise.letter_logprobs(model, [p], letters, shard=False)[0] - before).max() < 1e-5


def test_beyond_reading_says_when_a_listwise_row_only_reads_the_first_letter_and_why_the_union_loses():
    from trsr_utils.stages import beyond

    table = pd.DataFrame({"system": ["pointwise zero-shot", "listwise zero-shot", "listwise zero-shot, order-averaged"],
                          "recall@10": [0.0, 0.5, 0.4]})
    bias = pd.DataFrame({"system": ["pointwise zero-shot", "listwise zero-shot"], "orders": [3, 3],
                         "rank_range_mean": [0.0, 7.0], "users_rank_moved": [0.0, 1.0], "top_is_first": [0.0, 1.0],
                         "uniform_top_share": [0.05, 0.05]})
    two = pd.DataFrame({"retriever": ["SASRec", "summary", "union"], "reranker": ["none"] * 3,
                        "recall@10": [0.1, 0.1, 0.0], "ndcg@10": [0.03, 0.05, 0.0], "retrieved@20": [1 / 6, 1 / 6, 0.0]})
    timing = {"rows": [{"scoring": "listwise", "users": 2, "candidates_per_s": 10.0},
                       {"scoring": "pointwise", "users": 2, "candidates_per_s": 20.0}], "speedup_listwise": 0.5}
    text = "\n".join(beyond.reading({"table": table, "bias": bias, "two_stage": two, "timing": timing,
                                     "record": {"n_users": 6, "retrieve": 20}}))
    assert "listed first in 100% of prompts, so its Recall@10 measures where the positive was listed" in text
    assert "notebook 07's scores of the same rows on these 6 users" in text
    assert "The union finds fewer than one of its parts" in text and "keeps about the top 10 of each" in text
    # a tie on Recall@10 goes to NDCG@10, and is said
    assert "the best pipeline is summary + no re-ranker (Recall@10 0.100, NDCG@10 0.050; tied on Recall@10 with " \
           "SASRec + no re-ranker" in text and "in their top 20 for SASRec 17%, summary 17%, union 0% of users" in text
    assert "{" not in text  # every placeholder filled
    # every pipeline at 0: none is called best
    zero = two.assign(**{"recall@10": 0.0, "ndcg@10": 0.0})
    text = "\n".join(beyond.reading({"table": table, "bias": bias, "two_stage": zero, "timing": timing,
                                     "record": {"n_users": 6, "retrieve": 20}}))
    assert "none of the 3 pipelines puts a user's positive in its top 10" in text and "best pipeline" not in text
