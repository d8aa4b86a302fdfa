"""Prefix-sharing yes/no scoring equals scoring every full prompt on its own."""

from __future__ import annotations

import numpy as np
import pytest

from trsr_utils.method import llm, prompts, scoring


@pytest.fixture(scope="module")
def tiny():
    return llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)


def user_prompts(tok, n_users=5):
    prompter = prompts.RecommendationPrompter(tok, "movies", max_length=512)
    out = []
    for u in range(n_users):
        recent = [f"title: Movie {u}-{i}; genres: Drama" for i in range(u % 3 + 1)]
        cands = [f"title: Candidate {c} " + "long " * ((u + c) % 4) for c in range(2 + (u % 3) * 4)]
        out.append(prompter.build("This user likes drama." if u % 2 else None, recent, cands))
    return out


def test_prefix_sharing_equals_independent_scoring(tiny):
    model, tok = tiny
    answer = prompts.answer_tokens(tok)
    users = user_prompts(tok)
    shared = scoring.score_users(model, users, answer, users_per_batch=3, pad_id=tok.pad_token_id or 0)
    full = scoring.score_full(model, [u.full_ids(i) for u in users for i in range(len(u.suffix_ids))], answer,
                              batch_size=7)
    assert [len(s) for s in shared] == [len(u.suffix_ids) for u in users]
    assert np.abs(np.concatenate(shared) - full).max() < 1e-4
    # Suffixes of several users sorted by length and split into small chunks: same probabilities, same order.
    chunked = scoring.score_users(model, users, answer, users_per_batch=5, pad_id=tok.pad_token_id or 0,
                                  suffix_rows=4)
    assert np.abs(np.concatenate(chunked) - full).max() < 1e-4
    # The same with the model's own full-vocabulary logits, one prompt at a time.
    import torch

    for u in users[:2]:
        for i in range(len(u.suffix_ids)):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([u.full_ids(i)])).logits[0, -1]
            p = torch.softmax(logits[[answer.yes_id, answer.no_id]], -1)[0].item()
            assert abs(p - shared[users.index(u)][i]) < 1e-4
    padded = scoring.score_full(model, [u.full_ids(0) for u in users], answer, pad_to=400)
    assert np.abs(padded - np.array([s[0] for s in shared])).max() < 1e-4


def test_confident_candidates_keep_their_order_instead_of_tying():
    """Gaps of 18-30 nats: a float32 softmax rounds them all to p(yes) = 1.0 (a tie, and ties rank the positive
    last); the scorer's float64 sigmoid of the float32 gap keeps their order, also from bfloat16 hidden states."""
    import torch

    answer = prompts.AnswerTokens(yes_id=0, no_id=1, yes="Yes", no="No")
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    gaps = torch.tensor([18.0, 21.0, 24.0, 30.0])
    hidden = torch.stack([gaps, torch.zeros(4)], dim=1)
    old = torch.softmax(hidden @ head.weight[[0, 1]].T, dim=-1)[:, 0]
    assert len(set(old.tolist())) == 1  # the defect: all four tie at 1.0
    p = scoring._answer_probs(hidden, head, answer)
    assert p.dtype == torch.float64 and (p.diff() > 0).all()
    bf16 = scoring._answer_probs(hidden.bfloat16(), head.bfloat16(), answer)
    assert (bf16.diff() > 0).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_rounding_bound_covers_two_correct_routes_in_each_dtype(dtype):
    """The notebooks' by-hand checks compare two routes to p(yes) (shared prefix, full prompt) with a tolerance
    derived from the dtype (scoring.p_yes_tolerance): it must hold in bfloat16 as in float32, and grow with eps."""
    import torch

    tok = llm.load_tokenizer(llm.TINY_LLAMA2)  # Llama-2's shape: BOS before every prompt
    model = llm.load_model(llm.TINY_LLAMA2, dtype, device="cpu")
    answer = prompts.answer_tokens(tok)
    users = user_prompts(tok)
    shared = np.concatenate(scoring.score_users(model, users, answer, users_per_batch=3, pad_id=tok.pad_token_id))
    sequences = [u.full_ids(i) for u in users for i in range(len(u.suffix_ids))]
    assert all(s[0] == tok.bos_token_id and s[1] != tok.bos_token_id for s in sequences)
    full = scoring.score_full(model, sequences, answer, batch_size=7)
    decoder, head = scoring.decoder_and_head(model)
    with torch.no_grad():
        last = torch.stack([decoder(input_ids=torch.tensor([s])).last_hidden_state[0, -1] for s in sequences])
    tolerance = scoring.p_yes_tolerance(last, head, answer)
    assert np.abs(shared - full).max() <= tolerance
    eps = torch.finfo(getattr(torch, dtype)).eps
    rows = head.weight[[answer.yes_id, answer.no_id]].detach()
    expected = scoring.ROUNDINGS * eps / 2 * (last.float().abs() @ rows.float().abs().T)
    assert torch.allclose(scoring.rounding_bound(last, rows), expected)
    assert tolerance == pytest.approx(float(expected.sum(dim=-1).max()) / 4)
    # a log-probability over the same rows: the logit's own change and logsumexp's largest
    log_p = torch.log_softmax(full_logits := (last.float() @ rows.float().T), dim=-1)
    assert scoring.logprob_tolerance(last, rows) == pytest.approx(2 * float(expected.max()))
    shifted = torch.log_softmax(full_logits + scoring.rounding_bound(last, rows) * torch.tensor([1.0, -1.0]), dim=-1)
    assert (shifted - log_p).abs().max() <= scoring.logprob_tolerance(last, rows) * (1 + 1e-6)
