"""The summarizer's LLM calls: batched generation with one model through the run's call cache (a call already made
with the same model, precision, prompt and settings is read back, never generated again), shared out over
processes under a launcher, and the generation settings of ``cfg.summary`` (and of the retry of a degenerate
call).

Notebooks 03 and 04 teach it (the call cache and its hits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from trsr_utils.core import distributed
from trsr_utils.core.progress import bar
from trsr_utils.method import llm
from trsr_utils.store.callcache import Call, CallCache, NotOpened, call_key


@dataclass
class CallStats:
    hits: int = 0
    misses: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


class LLMCaller:
    """Cached, batched generation with one model: prompts in, :class:`Call` s out (input order)."""

    def __init__(self, model: Any, tokenizer: Any, model_id: str, cache: CallCache | NotOpened, batch_size: int = 16,
                 seed: int = 0, quiet: bool = False, command: str = ""):
        self.model, self.tokenizer, self.model_id = model, tokenizer, model_id
        self.command = command  # the command line that shares these calls out over GPUs ({n}: how many)
        self.cache, self.batch_size, self.seed, self.quiet = cache, batch_size, seed, quiet
        self.stats = CallStats()

    def _generate_shared(self, texts: list[str], gen_args: Mapping[str, Any],
                         persist: Callable[[list[llm.Generation], list[int]], None]) -> None:
        """Under a launcher: the batches one process would run, dealt to the processes a round at a time (same
        prompts, padding and seed per batch as alone), each round's results gathered on every process."""
        bos = llm.adds_bos(self.tokenizer)
        lengths = [len(llm.encode_prompt(self.tokenizer, t, bos)) for t in texts]
        batches = llm.length_batches(lengths, self.batch_size)
        rank = distributed.world()[0]
        for group in distributed.rounds(len(batches)):
            mine: list[tuple[int, list[int], list[llm.Generation]]] = []  # (batch, its prompts, generations)
            if rank < len(group):
                b = group[rank]
                made = llm.generate(llm.resolve(self.model), self.tokenizer, [texts[i] for i in batches[b]],
                                    batch_size=self.batch_size, seed=self.seed + b * self.batch_size, **gen_args)
                mine = [(b, batches[b], made)]
            for _, idx, made in sorted(distributed.gather(mine)):  # one cache write per batch, in batch order
                persist(made, idx)

    def __call__(self, texts: Sequence[str], params: Mapping[str, Any], desc: str = "LLM calls") -> list[Call]:
        params = dict(params)
        if params.get("do_sample"):
            params["seed"] = self.seed  # sampled outputs depend on the seed: it is part of the key
        if llm.adds_bos(self.tokenizer):  # the model reads <s> + prompt (llm.encode_prompt): another input
            params["bos"] = True
        keys = [call_key(self.model_id, t, params) for t in texts]
        # Rank 0 reads the cache; under a launcher the others receive what it found (they never open the file).
        done = distributed.broadcast(self.cache.get_many(keys) if distributed.is_main() else None)
        hits = sum(k in done for k in keys)
        self.stats.hits += hits
        todo = list(dict.fromkeys(k for k in keys if k not in done))
        self.stats.misses += len(todo)
        if todo:
            if self.command:
                distributed.warn_alone(f"{len(todo)} LLM calls ({desc})", self.command)
            prompt_of = {k: t for k, t in zip(keys, texts)}
            todo_texts = [prompt_of[k] for k in todo]
            gen_args = {k: v for k, v in params.items() if k not in ("seed", "bos")}
            # the bar counts the new calls only: say how many of the request the cache answered (a resumed run)
            cached = f" ({hits} of {len(keys)} from the cache)" if hits else ""
            with bar(total=len(todo), desc=f"{desc}{cached}", unit="call", quiet=self.quiet) as progress_bar:
                def persist(generations: list[llm.Generation], indices: list[int]) -> None:
                    rows = []
                    for g, i in zip(generations, indices):
                        call = Call(g.text, g.finish, g.prompt_tokens, g.new_tokens, g.seconds, False)
                        done[todo[i]] = call
                        rows.append((todo[i], self.model_id, todo_texts[i], params, call))
                        self.stats.generated_tokens += g.new_tokens
                        self.stats.seconds += g.seconds
                    if distributed.is_main():  # one writer: every process holds every result
                        self.cache.put_many(rows)
                    progress_bar.update(len(indices))

                if distributed.active():
                    self._generate_shared(todo_texts, gen_args, persist)
                else:
                    llm.generate(llm.resolve(self.model), self.tokenizer, todo_texts, batch_size=self.batch_size,
                                 seed=self.seed, on_batch=persist, **gen_args)
                distributed.barrier()  # the cache holds every call before any process reads it again
        # A key seen twice in one request (identical prompts) was generated once; report it as a hit.
        fresh: set[str] = set()
        out = []
        for k in keys:
            c = done[k]
            if not c.cached and k in fresh:
                c = Call(c.text, c.finish, c.prompt_tokens, c.new_tokens, c.seconds, True)
            fresh.add(k)
            out.append(c)
        return out


def generation_params(cfg: Any, retry: bool = False) -> dict[str, Any]:
    """Generation settings from ``cfg.summary``; ``retry`` gives the stated fallback for degenerate calls."""
    s = cfg.summary
    params: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "max_sentences": s.max_sentences,
                              "do_sample": s.do_sample}
    if s.do_sample:
        params.update(temperature=s.temperature, top_p=s.top_p)
    if retry:
        params.update(max_new_tokens=int(round(s.max_new_tokens * s.retry_token_factor)),
                      repetition_penalty=s.retry_repetition_penalty,
                      no_repeat_ngram_size=s.retry_no_repeat_ngram_size)
    return params
