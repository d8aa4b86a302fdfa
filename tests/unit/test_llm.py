"""Model registry and batched generation (tiny random Llama: fast, deterministic)."""

from __future__ import annotations

import pytest
import torch

from trsr_utils.method import llm


@pytest.fixture(scope="module")
def tiny():
    return llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)


def test_tiny_random_is_small_and_deterministic(tiny):
    model, tok = tiny
    assert sum(p.numel() for p in model.parameters()) < 4_000_000
    again = llm.load_model(llm.TINY, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert model.config.vocab_size == len(tok)


def test_batched_left_padded_generation_matches_one_at_a_time(tiny):
    model, tok = tiny
    prompts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nThis user",
               "<|im_start|>user\na much longer prompt with many more words in it<|im_end|>\n<|im_start|>assistant\n",
               "short"]
    batched = llm.generate(model, tok, prompts, max_new_tokens=8, batch_size=3)
    single = llm.generate(model, tok, prompts, max_new_tokens=8, batch_size=1)
    assert [g.text for g in batched] == [g.text for g in single]
    for g, p in zip(batched, prompts):
        assert g.prompt_tokens == len(tok.encode(p, add_special_tokens=False))
        assert g.new_tokens <= 8 and g.finish in ("eos", "length")


def test_clear_errors_without_gpu_or_model():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(llm.ModelNotAvailable, match="no CUDA GPU"):
        llm.resolve_device("cuda")
    with pytest.raises(llm.ModelNotAvailable, match="needs a CUDA GPU"):
        llm.load_model(llm.TINY, quantization="8bit", device="cpu")
    with pytest.raises(llm.ModelNotAvailable, match="cannot load model '/nonexistent/model'"):
        llm.load_model("/nonexistent/model", device="cpu")


def test_generation_prompts_get_bos_when_the_tokenizer_adds_one(tiny):
    import copy

    model, tok = tiny
    with_bos = copy.deepcopy(tok)
    with_bos.add_bos_token = True
    plain = llm.generate(model, tok, ["Hello there"], max_new_tokens=2)[0]
    bos = llm.generate(model, with_bos, ["Hello there"], max_new_tokens=2)[0]
    assert bos.prompt_tokens == plain.prompt_tokens + 1
