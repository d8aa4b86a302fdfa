"""Yes/no scoring: p(yes) for every candidate, sharing each user's prompt prefix.

p(yes) = softmax over the two logits (yes, no) at the position right after the
candidate suffix, the position where the model would write its answer.

One user's candidates share everything before the candidate, so the prefix is
run once (its key/value cache) and all suffixes are run as one batch on top of
it. Several users' prefixes are batched too: left-padded, with explicit
position ids, then each cache row is repeated for that user's candidates.
Only the hidden state at each row's last real token goes through the output
layer, and only for the two answer tokens, instead of the whole vocabulary
at every position. The result equals scoring every full prompt on its own
(tested to 1e-4 in float32, with and without a LoRA adapter).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .llm import pad_ids
from .prompts import AnswerTokens, UserPrompts


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """(decoder stack, output layer) of a causal LM, looking through a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    head = base.get_output_embeddings()
    if decoder is None or head is None:
        raise TypeError(f"cannot find the decoder and output layer of {type(base).__name__}")
    return decoder, head


def _answer_probs(hidden: Any, head: Any, answer: AnswerTokens) -> Any:
    """p(yes) from last-position hidden states [rows, hidden] (float32 softmax over the two logits)."""
    import torch

    w = head.weight[[answer.yes_id, answer.no_id]]
    logits = hidden.to(w.dtype) @ w.T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[[answer.yes_id, answer.no_id]]
    return torch.softmax(logits.float(), dim=-1)[:, 0]


def score_users(model: Any, prompts: Sequence[UserPrompts], answer: AnswerTokens, users_per_batch: int = 4,
                pad_id: int = 0, progress: Any = None, suffix_rows: int = 21) -> list[np.ndarray]:
    """p(yes) per candidate for each user (arrays in the users' candidate order), prefix computed once per user.

    The candidate suffixes of a batch of users are sorted by length and run ``suffix_rows`` at a time, each
    row on its own copy of its user's prefix cache: candidate texts differ in length, and padding them all to
    the longest one wasted a third of the suffix compute.
    """
    import torch
    from transformers import DynamicCache

    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(prompts), users_per_batch):
            group = prompts[start:start + users_per_batch]
            ids, mask = pad_ids([p.prefix_ids for p in group], pad_id, left=True)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            prefix = decoder(input_ids=ids.to(device), attention_mask=mask.to(device),
                             position_ids=positions.to(device), use_cache=True)
            layers = [(layer.keys, layer.values) for layer in prefix.past_key_values.layers]
            rows = [(u, c) for u, p in enumerate(group) for c in range(len(p.suffix_ids))]
            order = sorted(range(len(rows)), key=lambda r: len(group[rows[r][0]].suffix_ids[rows[r][1]]))
            probs = np.empty(len(rows))
            for at in range(0, len(order), suffix_rows):
                chunk = order[at:at + suffix_rows]
                owners = [rows[r][0] for r in chunk]
                index = torch.tensor(owners, device=device)
                cache = DynamicCache()
                for i, (k, v) in enumerate(layers):  # one cache row per candidate (a copy: forward extends it)
                    cache.update(k[index], v[index], i)
                suffixes = [group[u].suffix_ids[c] for u, c in (rows[r] for r in chunk)]
                s_ids, s_mask = pad_ids(suffixes, pad_id, left=False)
                lengths = torch.tensor([len(group[u].prefix_ids) for u in owners])
                s_pos = lengths[:, None] + torch.arange(s_ids.shape[1])[None, :]
                full_mask = torch.cat([mask[owners], s_mask], dim=1)
                hidden = decoder(input_ids=s_ids.to(device), attention_mask=full_mask.to(device),
                                 position_ids=s_pos.to(device), past_key_values=cache,
                                 use_cache=True).last_hidden_state
                last = torch.tensor([len(x) - 1 for x in suffixes], device=device)
                p_yes = _answer_probs(hidden[torch.arange(len(chunk), device=device), last], head, answer)
                probs[chunk] = p_yes.cpu().numpy()
            at = 0
            for p in group:
                out.append(probs[at:at + len(p.suffix_ids)].copy())
                at += len(p.suffix_ids)
            if progress is not None:
                progress.update(len(group))
    return out


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
