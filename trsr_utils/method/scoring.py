"""Yes/no scoring: p(yes) for every candidate, sharing each user's prompt prefix.

p(yes) = softmax over the two logits (yes, no) at the position right after the
candidate suffix, the position where the model would write its answer: the
sigmoid of the yes-no logit gap, computed in float32 and float64 whatever
the model's precision, so that candidates rank by the gap.

One user's candidates share everything before the candidate, so the prefix is
run once (its key/value cache) and all suffixes are run as one batch on top of
it. Several users' prefixes are batched too: left-padded, with explicit
position ids, then each cache row is repeated for that user's candidates.
Only the hidden state at each row's last real token goes through the output
layer, and only for the two answer tokens, instead of the whole vocabulary
at every position. The result equals scoring every full prompt on its own
(tested to 1e-4 in float32, with and without a LoRA adapter).

Notebooks 06 and 07 teach it (the shared prefix written out by hand first).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from trsr_utils.core import distributed
from trsr_utils.method.llm import pad_ids
from trsr_utils.method.prompts import AnswerTokens, UserPrompts


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """(decoder stack, output layer) of a causal LM, looking through DataParallel / DDP and PEFT wrappers."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):  # (Distributed)DataParallel
        model = model.module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    head = base.get_output_embeddings()
    if decoder is None or head is None:
        raise TypeError(f"cannot find the decoder and output layer of {type(base).__name__}")
    return decoder, head


def _answer_probs(hidden: Any, head: Any, answer: AnswerTokens) -> Any:
    """p(yes) from last-position hidden states [rows, hidden]: sigmoid of the yes-no logit gap, in float64.

    The two logits come from float32 whatever the model's precision: two rows of the output layer cost nothing,
    and a bfloat16 logit (8 significant bits: steps of 0.06-0.125 at typical magnitudes) would tie many
    candidates. The gap goes through the sigmoid in float64, so p(yes) keeps the gap's order up to |gap| ~ 36
    (a float32 softmax rounds every gap above ~17 to exactly 1.0: confident candidates would tie, and ties rank
    the positive pessimistically)."""
    import torch

    with torch.autocast(hidden.device.type, enabled=False):  # not even under an autocast context
        w = head.weight[[answer.yes_id, answer.no_id]].float()
        logits = hidden.float() @ w.T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[[answer.yes_id, answer.no_id]].float()
        return torch.sigmoid((logits[:, 0] - logits[:, 1]).double())


ROUNDINGS = 4  # roundings allowed per logit: the last hidden state's own, and the layers' before it


def rounding_bound(hidden: Any, rows: Any, dtype: Any = None, roundings: int = ROUNDINGS) -> Any:
    """How far two correct computations of the logits ``z = hidden @ rows.T`` may differ in ``dtype`` (default:
    the hidden states' own), per logit, [positions, rows].

    Two routes to the same hidden state (a shared prefix or the full prompt, one user or a padded batch) order
    their sums differently, so each entry h_i comes out rounded differently: by up to half a rounding unit,
    eps/2 of its size (``torch.finfo(dtype).eps``: 2^-23 in float32, 2^-7 in bfloat16). The logit
    z = sum_i h_i w_i then moves by up to eps/2 * sum_i |h_i w_i|, the size of the sum *before* its terms cancel
    (SmolLM2's answer logits: |z| ~ 31, the sum of |h_i w_i| ~ 60). ``roundings`` such roundings are allowed.
    Measured on SmolLM2-135M (shared prefix against full prompt): float32 differences reach half this bound,
    bfloat16 ones a twentieth."""
    import torch

    eps = torch.finfo(dtype or hidden.dtype).eps
    return roundings * eps / 2 * (hidden.detach().abs().float() @ rows.detach().abs().float().T)


def p_yes_tolerance(hidden: Any, head: Any, answer: AnswerTokens, dtype: Any = None) -> float:
    """The largest difference in p(yes) that rounding alone explains for these last-position hidden states:
    p = sigmoid(z_yes - z_no) moves by at most a quarter of the gap's change, and the gap by the two logits'
    bounds (:func:`rounding_bound`)."""
    bound = rounding_bound(hidden, head.weight[[answer.yes_id, answer.no_id]], dtype)
    return float(bound.sum(dim=-1).max()) / 4


def logprob_tolerance(hidden: Any, rows: Any, dtype: Any = None) -> float:
    """The largest difference in a log-probability over ``rows`` (a softmax over those logits: 09's letters, or
    06's cross-entropy over the vocabulary) that rounding alone explains: log p_j = z_j - logsumexp(z) moves by at
    most |dz_j| + max_k |dz_k| (logsumexp moves by at most its largest term's change), each logit's change bounded
    by :func:`rounding_bound`."""
    return 2 * float(rounding_bound(hidden, rows, dtype).max())


def for_scoring(model: Any, dtype: str | None) -> Any:
    """The model to score with in ``dtype`` (``model.scoring_dtype``): ``model`` itself when it already computes
    in that precision (or ``dtype`` is None), else a copy with its weights (a LoRA adapter's included) cast, in
    eval mode. Training keeps its float32 weights; only the yes/no forward passes run in the cheaper precision.
    """
    import copy

    import torch

    if dtype is None:
        return model
    target = getattr(torch, dtype)
    if next(model.parameters()).dtype == target:
        return model
    return copy.deepcopy(model).to(target).eval()


def prefix_pass(decoder: Any, ids: Any, mask: Any) -> list:
    """Run a left-padded batch of prefixes ([users, length] ids and mask, explicit position ids); returns each
    layer's (keys, values) for :func:`suffix_states` to continue from. Differentiable."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers]


def suffix_states(decoder: Any, layers: list, mask: Any, owners: Any, s_ids: Any, s_mask: Any) -> Any:
    """Hidden states at the last token of each right-padded suffix (``s_ids``/``s_mask``: [rows, length]), each
    row run on a copy of its owner's prefix cache (row ``owners[r]`` of :func:`prefix_pass`, whose padding mask
    is ``mask``): [rows, hidden]. Differentiable, so training can share the prefix too (the gradient reaches the
    prefix through the copied keys and values)."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):  # one cache row per candidate (a copy: forward extends it)
        cache.update(k[owners], v[owners], i)
    s_pos = mask.sum(-1)[owners][:, None] + torch.arange(s_ids.shape[1], device=s_ids.device)[None, :]
    full_mask = torch.cat([mask[owners], s_mask], dim=1)
    hidden = decoder(input_ids=s_ids, attention_mask=full_mask, position_ids=s_pos, past_key_values=cache,
                     use_cache=True).last_hidden_state
    return hidden[torch.arange(len(s_ids), device=s_ids.device), s_mask.sum(-1) - 1]


def score_users(model: Any, prompts: Sequence[UserPrompts], answer: AnswerTokens, users_per_batch: int = 4,
                pad_id: int = 0, progress: Any = None, suffix_rows: int = 21, shard: bool = True) -> list[np.ndarray]:
    """p(yes) per candidate for each user (arrays in the users' candidate order), prefix computed once per user.

    Under a launcher (:mod:`trsr_utils.core.distributed`) the batches are shared out over the processes, which must
    all call this; ``shard=False`` scores everything in this process (rank 0's validation inside SFT).

    The candidate suffixes of a batch of users are sorted by length and run ``suffix_rows`` at a time, each
    row on its own copy of its user's prefix cache: candidate texts differ in length, and padding them all to
    the longest one wasted a third of the suffix compute.
    """
    import torch

    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    starts = list(range(0, len(prompts), users_per_batch))
    # Under a launcher each process scores every world-th batch of users (the same batches as alone, so the
    # same numbers) and every process receives all of them.
    mine = [starts[b] for b in distributed.my_batches(len(starts))] if shard else starts
    done: list[tuple[int, list[np.ndarray]]] = []  # (first user of the batch, its users' scores)
    with torch.no_grad():
        for start in mine:
            group = prompts[start:start + users_per_batch]
            ids, mask = pad_ids([p.prefix_ids for p in group], pad_id, left=True)
            mask = mask.to(device)
            layers = prefix_pass(decoder, ids.to(device), mask)
            rows = [(u, c) for u, p in enumerate(group) for c in range(len(p.suffix_ids))]
            order = sorted(range(len(rows)), key=lambda r: len(group[rows[r][0]].suffix_ids[rows[r][1]]))
            probs = np.empty(len(rows))
            for at in range(0, len(order), suffix_rows):
                chunk = order[at:at + suffix_rows]
                owners = torch.tensor([rows[r][0] for r in chunk], device=device)
                s_ids, s_mask = pad_ids([group[u].suffix_ids[c] for u, c in (rows[r] for r in chunk)], pad_id,
                                        left=False)
                states = suffix_states(decoder, layers, mask, owners, s_ids.to(device), s_mask.to(device))
                probs[chunk] = _answer_probs(states, head, answer).cpu().numpy()
            bounds = np.cumsum([0] + [len(p.suffix_ids) for p in group])
            done.append((start, [probs[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:])]))
            if progress is not None:
                progress.update(len(group))
    by_start = dict(distributed.gather(done) if shard else done)  # every process's batches, on every process
    return [scores for start in starts for scores in by_start[start]]


def score_full(model: Any, sequences: Sequence[Sequence[int]], answer: AnswerTokens, batch_size: int = 21,
               pad_id: int = 0, pad_to: int | None = None) -> np.ndarray:
    """p(yes) for whole prompts scored independently (right-padded per batch, or to ``pad_to`` tokens).

    The reference the prefix-sharing scorer is checked against, and the
    baselines of the scoring benchmark.
    """
    import torch

    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size]
            ids, mask = pad_ids(batch, pad_id, left=False, width=pad_to)
            hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            last = torch.tensor([len(s) - 1 for s in batch], device=device)
            out.append(_answer_probs(hidden[torch.arange(len(batch), device=device), last], head, answer).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
