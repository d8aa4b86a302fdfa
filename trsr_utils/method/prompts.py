"""The four prompts of LLM-TRSR, in our own words, for three domains.

* block summary: one block of items -> a short description of the user's tastes
* hierarchical merge: k chronologically ordered summaries -> one summary
* recurrent update: previous summary + the next block -> a complete new summary
* recommendation: instruction + preference summary + the last k items +
  candidate -> "Yes" or "No"
* listwise recommendation (notebook 09): the same, with every candidate in one
  prompt, labelled A, B, C, ... -> the letter of the one the user will choose

Small models summarise better when the data comes first and the task after it,
when they are asked for two or three sentences about tastes (not a list), and
when the answer is started for them ("This user"): the summary prompts do all
three.

Prompts go through the model's chat template when it has one, and a plain
``### User: / ### Assistant:`` layout otherwise. The recommendation prompt is
split into a *prefix* (everything before the candidate, identical for all of
one user's candidates, so scoring can reuse its key/value cache) and a
*suffix* per candidate; training and scoring tokenize the two parts separately
and concatenate the ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from trsr_utils.method.chunks import block_text
from trsr_utils.method.llm import encode_prompt
from trsr_utils.method.text import cap_tokens, domain_of

SUMMARY_OPENING = "This user"
# Where the candidate goes in the rendered recommendation prompt: the text before it is shared by all candidates.
CANDIDATE_SLOT = "\x00CANDIDATE\x00"

DOMAINS: dict[str, dict[str, str]] = {
    "movies": {"item": "movie", "items": "movies", "did": "watched and rated", "will": "enjoy",
               "aspects": "genres, eras and kinds of story"},
    "news": {"item": "news article", "items": "news articles", "did": "clicked on and read", "will": "click on",
             "aspects": "topics, regions and kinds of story"},
    "products": {"item": "product", "items": "products", "did": "viewed or bought", "will": "buy",
                 "aspects": "product types, brands, price range and styles"},
}
SYSTEM = "You are a recommender system. You read what a user did and judge what they will like."


def _n_items(n: int, w: dict[str, str]) -> str:
    return f"this {w['item']}" if n == 1 else f"these {n} {w['items']}"


def _words(domain: str) -> dict[str, str]:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {sorted(DOMAINS)}")
    return DOMAINS[domain]


def block_summary_messages(lines: Sequence[str], domain: str) -> list[dict[str, str]]:
    w = _words(domain)
    if len(lines) == 1:
        data = f"Here is a {w['item']} a user {w['did']}:"
    else:
        data = f"Here are {len(lines)} {w['items']} a user {w['did']}, oldest first:"
    task = (f"In two or three sentences, describe this user's tastes: which {w['aspects']} they like. "
            f"Write about the user, not a list of the {w['items']}.")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{data}\n{block_text(lines)}\n\n{task}"}]


def merge_messages(summaries: Sequence[str], domain: str) -> list[dict[str, str]]:
    w = _words(domain)
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(summaries, start=1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": (
            f"Here are {len(summaries)} descriptions of one user's tastes in {w['items']}, each from a later period "
            f"than the one before:\n{numbered}\n\n"
            "In two or three sentences, write one description of this user's overall tastes that keeps what "
            "lasts across the periods and what is new in the latest ones."
        )},
    ]


def recurrent_messages(previous: str, lines: Sequence[str], domain: str) -> list[dict[str, str]]:
    w = _words(domain)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": (
            f"What we know about a user's tastes in {w['items']} so far:\n{previous}\n\n"
            f"Since then the user {w['did']} {_n_items(len(lines), w)}, oldest first:\n{block_text(lines)}\n\n"
            "In two or three sentences, write an updated description of this user's tastes. Keep what still holds, "
            f"and say what the new {w['items']} add or change."
        )},
    ]


def _what_the_user_did(summary: str | None, recent: Sequence[str], w: dict[str, str]) -> list[str]:
    """The parts of a recommendation prompt (pointwise or listwise) that describe the user."""
    parts = [f"Preference summary: {summary}"] if summary is not None else []
    if recent:
        return parts + [f"Most recent {w['items']}, oldest first:\n{block_text(recent)}"]
    return parts + [f"Most recent {w['items']}: (none shown)"]


def recommendation_messages(summary: str | None, recent: Sequence[str], domain: str) -> list[dict[str, str]]:
    """The recommendation conversation with a placeholder where the candidate goes."""
    w = _words(domain)
    parts = [f"Decide whether a user will {w['will']} a candidate {w['item']}, given "
             + ("a summary of their preferences and " if summary is not None else "")
             + f"the {w['items']} they {w['did']} most recently. Answer with Yes or No only.",
             *_what_the_user_did(summary, recent, w)]
    # The question comes before the candidate, so that the part repeated for each of the 21 candidates
    # (the suffix) is the candidate alone: it is scored 21 times per user, the prefix once.
    parts.append(f"Will the user {w['will']} the candidate {w['item']} below? Answer Yes or No.\n\n"
                 f"Candidate {w['item']}:{CANDIDATE_SLOT}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def listwise_messages(summary: str | None, recent: Sequence[str], candidates: Sequence[str],
                      domain: str) -> list[dict[str, str]]:
    """One prompt for all of a user's candidates, labelled with letters; the answer is one letter."""
    w = _words(domain)
    if len(candidates) > len(LETTERS):
        raise ValueError(f"a listwise prompt labels candidates A-Z: {len(candidates)} candidates are more than "
                         f"{len(LETTERS)} (lower data.eval_negatives or beyond.retrieve)")
    parts = [f"Decide which of the candidate {w['items']} below a user will {w['will']}, given "
             + ("a summary of their preferences and " if summary is not None else "")
             + f"the {w['items']} they {w['did']} most recently. Answer with one letter only.",
             *_what_the_user_did(summary, recent, w)]
    listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(candidates))
    parts.append(f"Candidate {w['items']}:\n{listed}")
    parts.append(f"Which candidate will the user {w['will']}? Answer with its letter ({LETTERS[0]}-"
                 f"{LETTERS[len(candidates) - 1]}) only.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def render(tokenizer: Any, messages: list[dict[str, str]], answer_start: str = "") -> str:
    """Chat template with the generation prompt (plain layout without one), then ``answer_start``."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"### {m['role'].capitalize()}:\n{m['content']}\n\n" for m in messages) + "### Assistant:\n"
    return text + answer_start


def generation_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A summarization prompt whose answer is already started with :data:`SUMMARY_OPENING`."""
    return render(tokenizer, messages, SUMMARY_OPENING)


@dataclass
class AnswerTokens:
    yes_id: int
    no_id: int
    yes: str
    no: str


def answer_tokens(tokenizer: Any, prompt_tail: str | None = None) -> AnswerTokens:
    """The token ids of "Yes" and "No" as they follow the prompt.

    After a newline (chat templates end the generation prompt with one) the
    words come without a leading space; after other text, with one. Each must
    be a single token of this tokenizer: otherwise p(yes) would be
    ill-defined, so this fails loudly rather than falling back to ``<unk>``.
    """
    if prompt_tail is None:
        prompt_tail = render(tokenizer, [{"role": "user", "content": "x"}])
    space = "" if (not prompt_tail or prompt_tail[-1].isspace()) else " "
    ids = {}
    for word in ("Yes", "No"):
        token_ids = tokenizer.encode(space + word, add_special_tokens=False)
        if len(token_ids) != 1:
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            raise ValueError(f"tokenizer {name!r} splits the answer word {space + word!r} into {len(token_ids)} "
                             f"tokens {token_ids}: yes/no scoring needs single-token answers")
        ids[word] = token_ids[0]
    return AnswerTokens(ids["Yes"], ids["No"], space + "Yes", space + "No")


def letter_tokens(tokenizer: Any, n: int, prompt_tail: str | None = None) -> list[int]:
    """The token ids of the first ``n`` letters as they follow the prompt (no leading space after a newline, as
    :func:`answer_tokens`). Each must be one token, and all distinct: a candidate's score is its letter's logit
    at the answer position, which a letter split over two tokens would not define."""
    if prompt_tail is None:
        prompt_tail = render(tokenizer, [{"role": "user", "content": "x"}])
    space = "" if (not prompt_tail or prompt_tail[-1].isspace()) else " "
    if n > len(LETTERS):
        raise ValueError(f"{n} candidates: the letter verbalizer has {len(LETTERS)} letters")
    ids = []
    for letter in LETTERS[:n]:
        token_ids = tokenizer.encode(space + letter, add_special_tokens=False)
        if len(token_ids) != 1:
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            raise ValueError(f"tokenizer {name!r} splits the letter {space + letter!r} into {len(token_ids)} tokens "
                             f"{token_ids}: listwise scoring needs single-token letters")
        ids.append(token_ids[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"two letters share a token id ({ids}): listwise scores would be ambiguous")
    return ids


@dataclass
class ListwisePrompt:
    """One user's listwise prompt: every candidate in it, the answer (a letter) after it."""

    text: str
    ids: list[int]
    n_candidates: int
    summary_tokens_cut: int
    recent_items_dropped: int
    candidate_token_cap: int = 0  # > 0: every candidate line was cut to this many tokens to fit
    candidates_cut: int = 0  # how many candidate lines that cap shortened


@dataclass
class UserPrompts:
    """One user's recommendation prompts: a shared prefix and one suffix per candidate."""

    prefix: str
    suffixes: list[str]
    prefix_ids: list[int]
    suffix_ids: list[list[int]]
    summary_tokens_cut: int
    recent_items_dropped: int

    def full_ids(self, index: int) -> list[int]:
        return self.prefix_ids + self.suffix_ids[index]

    def text(self, index: int) -> str:
        return self.prefix + self.suffixes[index]


class RecommendationPrompter:
    """Builds length-fitted recommendation prompts for one tokenizer and domain."""

    def __init__(self, tokenizer: Any, domain: str, max_length: int = 2048, summary_max_tokens: int = 256):
        _words(domain)
        self.tokenizer, self.domain = tokenizer, domain
        self.max_length, self.summary_max_tokens = max_length, summary_max_tokens

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any) -> "RecommendationPrompter":
        return cls(tokenizer, domain_of(cfg), cfg.prompt.max_length, cfg.prompt.summary_max_tokens)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _parts(self, summary: str | None, recent: Sequence[str]) -> tuple[str, str]:
        text = render(self.tokenizer, recommendation_messages(summary, recent, self.domain))
        prefix, sep, tail = text.partition(CANDIDATE_SLOT)
        if not sep:
            raise RuntimeError("the chat template dropped the candidate placeholder")
        return prefix, tail

    def _cut_summary(self, summary: str, keep: int) -> str:
        ids = self._encode(summary)
        if len(ids) <= keep:
            return summary
        return self.tokenizer.decode(ids[:keep]).rstrip("\ufffd").rstrip() + "…"

    def _fit(self, summary: str | None, recent: Sequence[str],
             over: Callable[[str | None, list[str]], tuple[int, Any]], too_long: Callable[[int], str]) -> tuple[Any, int, int]:
        """(what ``over`` built, summary tokens cut, recent items dropped) for the first fit within the limit:
        ``over(shown summary, recent items)`` -> (tokens over the limit, what it built). The summary is shortened
        first (to ``summary_max_tokens``, then as needed), then the oldest recent items are dropped; when nothing
        is left to shorten, ``too_long(tokens over)`` is the error."""
        recent = list(recent)
        original = len(self._encode(summary)) if summary is not None else 0
        keep, dropped = min(self.summary_max_tokens, original), 0
        while True:
            shown = self._cut_summary(summary, keep) if summary is not None else None
            excess, built = over(shown, recent)
            if excess <= 0:
                return built, original - keep if summary is not None else 0, dropped
            if summary is not None and keep > 0:
                keep = max(0, keep - excess)
            elif recent:
                recent.pop(0)
                dropped += 1
            else:
                raise ValueError(too_long(excess))

    def build(self, summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> UserPrompts:
        """Prefix + one suffix per candidate, all within ``max_length`` tokens (answer included).

        What gets shortened: first the summary (to ``summary_max_tokens``, then
        further as needed), then the oldest recent items. Never the
        instruction, never a candidate.
        """
        if not candidates:
            raise ValueError("at least one candidate is needed")
        suffix_texts = [" " + c for c in candidates]
        _, tail = self._parts(summary, recent)
        suffix_ids = [self._encode(s + tail) for s in suffix_texts]
        budget = self.max_length - max(len(s) for s in suffix_ids) - 1  # 1: the answer token

        def over(shown: str | None, kept: list[str]) -> tuple[int, tuple[str, list[int]]]:
            prefix, _ = self._parts(shown, kept)
            prefix_ids = encode_prompt(self.tokenizer, prefix)  # with BOS where the tokenizer adds one
            return len(prefix_ids) - budget, (prefix, prefix_ids)

        (prefix, prefix_ids), cut, dropped = self._fit(summary, recent, over, lambda excess: (
            f"the instruction and the longest candidate alone need {excess + self.max_length} tokens, more than "
            f"prompt.max_length={self.max_length}: raise it or cap item text (text.max_field_tokens)"))
        return UserPrompts(prefix, [s + tail for s in suffix_texts], prefix_ids, suffix_ids, cut, dropped)


class ListwisePrompter(RecommendationPrompter):
    """Builds length-fitted listwise prompts (all candidates in one prompt) for one tokenizer and domain."""

    def build_list(self, summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> ListwisePrompt:
        """The prompt within ``max_length`` tokens (answer included): the summary is shortened first, then the
        oldest recent items are dropped; never the instruction. When the candidates alone do not fit (long product
        texts: 21 lines of ~75 tokens), every candidate line is cut to the same number of tokens, the largest that
        leaves room for the instruction, the summary at ``summary_max_tokens`` and the recent items
        (:meth:`candidate_cap`); the cut is recorded in the prompt."""
        if not candidates:
            raise ValueError("at least one candidate is needed")
        try:
            return self._fit_list(summary, recent, candidates)
        except ValueError:
            cap = self.candidate_cap(summary, recent, candidates)
            capped = [cap_tokens(c, self.tokenizer, cap) for c in candidates]
            built = self._fit_list(summary, recent, capped)
            built.candidate_token_cap, built.candidates_cut = cap, sum(a != b for a, b in zip(candidates, capped))
            return built

    def _fit_list(self, summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> ListwisePrompt:
        def over(shown: str | None, kept: list[str]) -> tuple[int, tuple[str, list[int]]]:
            text = render(self.tokenizer, listwise_messages(shown, kept, candidates, self.domain))
            ids = encode_prompt(self.tokenizer, text)
            return len(ids) + 1 - self.max_length, (text, ids)  # 1: the answer letter

        (text, ids), cut, dropped = self._fit(summary, recent, over, lambda excess: (
            f"the listwise instruction and its {len(candidates)} candidates alone need {excess + self.max_length} "
            f"tokens, more than prompt.max_length={self.max_length}: raise it (a listwise prompt holds every "
            "candidate) or cap item text (text.max_field_tokens)"))
        return ListwisePrompt(text, ids, len(candidates), cut, dropped)

    def candidate_cap(self, summary: str | None, recent: Sequence[str], candidates: Sequence[str]) -> int:
        """The largest number of tokens per candidate line with which the instruction, the summary (at
        ``summary_max_tokens``), the recent items and every candidate fit; if even one token each leaves no room for
        them, the largest with which the instruction and the candidates alone fit (the summary and recent items are
        then shortened as usual). Binary search: a longer cap never makes the prompt shorter."""
        shown = self._cut_summary(summary, self.summary_max_tokens) if summary is not None else None

        def fits(cap: int, with_context: bool) -> bool:
            capped = [cap_tokens(c, self.tokenizer, cap) for c in candidates]
            messages = listwise_messages(shown if with_context else None, list(recent) if with_context else [],
                                         capped, self.domain)
            return len(encode_prompt(self.tokenizer, render(self.tokenizer, messages))) + 1 <= self.max_length

        longest = max(len(self._encode(c)) for c in candidates)
        for with_context in (True, False):
            if fits(1, with_context):
                low, high = 1, longest  # fits(low) holds; find the largest that does
                while low < high:
                    middle = (low + high + 1) // 2
                    low, high = (middle, high) if fits(middle, with_context) else (low, middle - 1)
                return low
        raise ValueError(f"the listwise instruction and {len(candidates)} candidates of one token each need more "
                         f"than prompt.max_length={self.max_length} tokens: raise it")


def placeholder_prompt(kind: str, domain: str) -> dict[str, Any]:
    """The prompt of ``kind`` (block, merge, update, recommendation, listwise) with placeholders for its data,
    as the LLM would be given it before the chat template: what a change of its wording changes (the stages
    that use it put it in their fingerprint)."""
    one, two = ["<item>"], ["<item 1>", "<item 2>"]
    made = {"block": lambda: [block_summary_messages(lines, domain) for lines in (one, two)],
            "merge": lambda: merge_messages(["<summary 1>", "<summary 2>"], domain),
            "update": lambda: [recurrent_messages("<summary>", lines, domain) for lines in (one, two)],
            "recommendation": lambda: [recommendation_messages("<summary>", two, domain),
                                       recommendation_messages(None, [], domain)],
            "listwise": lambda: [listwise_messages("<summary>", two, two, domain),
                                 listwise_messages(None, [], one, domain)]}[kind]()
    return {"messages": made, "opening": SUMMARY_OPENING if kind != "recommendation" else ""}


def _rendered(kind: str, cfg: Any) -> dict[str, Any]:
    return placeholder_prompt(kind, domain_of(cfg))


def code_parts(*kinds: str) -> dict[str, Callable[[Any], dict[str, Any]]]:
    """A stage's editable prompts (``"block"`` -> ``"block prompt"``), each rendered with placeholders under a
    config (:func:`placeholder_prompt`): what the stage's fingerprint keeps of their wording."""
    return {f"{kind} prompt": functools.partial(_rendered, kind) for kind in kinds}
