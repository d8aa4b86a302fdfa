"""Prompt templates: shared prefix, exact tokenization, length fitting, answer tokens."""

from __future__ import annotations

import pytest

from trsr_utils.method import prompts
from trsr_utils.data.movielens import load_movielens
from trsr_utils.method.text import item_text

SUMMARY = "This user enjoys tense crime dramas and 1990s thrillers, and lately also animated family films. " * 3


@pytest.fixture(scope="module")
def movie_lines():
    ds = load_movielens()
    return [item_text(a, ["title", "year", "genres"]) for a in list(ds.catalog.items.values())[:300]]


@pytest.mark.parametrize("domain", sorted(prompts.DOMAINS))
def test_prefix_is_shared_and_tokenizes_like_the_whole(smol_tokenizer, movie_lines, domain):
    prompter = prompts.RecommendationPrompter(smol_tokenizer, domain, max_length=2048)
    up = prompter.build(SUMMARY, movie_lines[:5], movie_lines[5:300])
    assert len(up.suffixes) == 295
    for i in range(len(up.suffixes)):
        assert up.text(i).startswith(up.prefix)
        whole = smol_tokenizer.encode(up.text(i), add_special_tokens=False)
        assert up.full_ids(i) == whole, f"boundary merge for candidate {i}: {up.suffixes[i][:40]!r}"
    assert up.summary_tokens_cut == 0 and up.recent_items_dropped == 0


def test_plain_layout_without_chat_template(char_tokenizer, movie_lines):
    up = prompts.RecommendationPrompter(char_tokenizer, "movies", max_length=4000).build(None, movie_lines[:2],
                                                                                        movie_lines[2:4])
    assert up.prefix.startswith("### System:\n") and up.text(0).endswith("### Assistant:\n")
    assert "Preference summary" not in up.prefix  # summary None: the TALLRec-style prompt
    assert up.full_ids(0) == char_tokenizer.encode(up.text(0), add_special_tokens=False)


def test_fitting_cuts_summary_first_then_oldest_recent_items(smol_tokenizer, movie_lines):
    prompter = prompts.RecommendationPrompter(smol_tokenizer, "movies", max_length=2048, summary_max_tokens=40)
    full = len(smol_tokenizer.encode(SUMMARY, add_special_tokens=False))
    up = prompter.build(SUMMARY, movie_lines[:5], movie_lines[5:8])
    assert up.summary_tokens_cut == full - 40 and up.recent_items_dropped == 0
    roomy = prompts.RecommendationPrompter(smol_tokenizer, "movies", max_length=2048, summary_max_tokens=1000)
    base = roomy.build(SUMMARY, movie_lines[:5], movie_lines[5:8])
    longest = max(len(s) for s in base.suffix_ids)
    # squeeze: a little less than the prompt needs -> only the summary is shortened
    tight = prompts.RecommendationPrompter(smol_tokenizer, "movies", len(base.prefix_ids) + longest + 1 - 10, 1000)
    up = tight.build(SUMMARY, movie_lines[:5], movie_lines[5:8])
    assert 0 < up.summary_tokens_cut and up.recent_items_dropped == 0
    assert all(len(up.full_ids(i)) + 1 <= tight.max_length for i in range(3))
    # much less: the summary goes entirely, then the oldest recent items
    no_summary = roomy.build(None, movie_lines[:5], movie_lines[5:8])
    tighter = prompts.RecommendationPrompter(smol_tokenizer, "movies", len(no_summary.prefix_ids) + longest + 1 - 5, 1000)
    up = tighter.build(SUMMARY, movie_lines[:5], movie_lines[5:8])
    assert up.summary_tokens_cut == full and up.recent_items_dropped >= 1
    assert movie_lines[4] in up.prefix and movie_lines[0] not in up.prefix  # the newest stay
    for i, cand in enumerate(movie_lines[5:8]):
        assert cand in up.suffixes[i] and "Answer Yes or No" in up.prefix  # never the candidate or question
        assert len(up.full_ids(i)) + 1 <= tighter.max_length


def test_impossible_fit_is_a_clear_error(smol_tokenizer, movie_lines):
    with pytest.raises(ValueError, match="raise it or cap item text"):
        prompts.RecommendationPrompter(smol_tokenizer, "movies", max_length=60).build(SUMMARY, movie_lines[:3],
                                                                                      movie_lines[3:5])


def test_answer_tokens(smol_tokenizer, char_tokenizer):
    ans = prompts.answer_tokens(smol_tokenizer)
    assert (ans.yes_id, ans.no_id, ans.yes) == (10539, 5230, "Yes")  # no leading space after "assistant\n"
    assert prompts.answer_tokens(smol_tokenizer, prompt_tail="Answer:").yes == " Yes"
    with pytest.raises(ValueError, match="splits the answer word 'Yes' into 3 tokens"):
        prompts.answer_tokens(char_tokenizer)


def test_summary_prompts_start_the_answer(smol_tokenizer):
    lines = ["title: Heat; year: 1995", "title: Fargo; year: 1996"]
    for messages in (prompts.block_summary_messages(lines, "movies"),
                     prompts.merge_messages(["This user likes A.", "This user likes B."], "movies"),
                     prompts.recurrent_messages("This user likes A.", lines, "movies")):
        text = prompts.generation_prompt(smol_tokenizer, messages)
        assert text.endswith("<|im_start|>assistant\nThis user")
        body = messages[-1]["content"]
        assert body.index("Heat" if "Heat" in body else "likes A") < body.index("two or three sentences")  # data first
    with pytest.raises(ValueError, match="unknown domain"):
        prompts.block_summary_messages(lines, "books")


def test_prompts_start_with_bos_exactly_when_the_tokenizer_adds_one(smol_tokenizer, movie_lines):
    """Llama-2's tokenizer puts <s> before a text and the base model was trained so; the plain ``###`` layout
    writes none. The prefix (and so every scored or trained prompt) follows the tokenizer's own setting, once;
    a chat template that already opens with the BOS token (SmolLM2's <|im_start|>) gets no second one."""
    import copy

    from trsr_utils.method import llm

    base = copy.deepcopy(smol_tokenizer)
    base.chat_template = None  # the plain layout, as for a base model such as Llama-2-7b-hf
    plain = prompts.RecommendationPrompter(base, "movies").build(SUMMARY, movie_lines[:3], movie_lines[3:6])
    assert not llm.adds_bos(base) and plain.prefix.startswith("### System:")
    with_bos = copy.deepcopy(base)
    with_bos.add_bos_token = True  # what a Llama-2 tokenizer does by default
    assert llm.adds_bos(with_bos)
    up = prompts.RecommendationPrompter(with_bos, "movies").build(SUMMARY, movie_lines[:3], movie_lines[3:6])
    assert up.prefix_ids == [with_bos.bos_token_id] + plain.prefix_ids and up.suffix_ids == plain.suffix_ids
    assert up.full_ids(0) == with_bos.encode(up.text(0))  # what the tokenizer itself makes of the whole prompt
    chat = copy.deepcopy(smol_tokenizer)
    chat.add_bos_token = True
    opened = prompts.RecommendationPrompter(chat, "movies").build(SUMMARY, movie_lines[:3], movie_lines[3:6])
    assert opened.prefix_ids[0] == chat.bos_token_id and opened.prefix_ids[1] != chat.bos_token_id
