"""Checks a written summary must pass beyond "complete sentences, no loop" (used by :mod:`.summarizer`).

Each check names one way a small model's summary goes wrong while still
reading as fluent text:

* ``repeated_clause``: a clause said again ("They enjoy both genres and enjoy
  both genres, and they enjoy both genres"); degenerate, like a loop;
* ``unclosed_quote``: a quotation opened and never closed (a title cut
  mid-quote after trimming); degenerate, like a cut-off sentence;
* ``unknown_title``: a quoted name, or a run of two or more capitalized words
  inside a sentence, that is in none of the summarized items' text (an
  invented or garbled title, a made-up fact such as "Netflix Prime Video");
  a heuristic: a genre written out in full ("Science Fiction") can trip it;
* ``prompt_copy``: four or more words in a row copied from the prompt's own
  instructions ("genres, eras and kinds of story") instead of the items;
* ``unchanged``: a merge or update that returns one of its input summaries
  word for word, ignoring the rest (the newer block, the other period).

The first two make a generation degenerate (retried once, then replaced by
the template summary); the other three are kept and flagged, so their rate is
visible in notebooks 03-05.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence
from trsr_utils.method import prompts

DEGENERATE = ("repeated_clause", "unclosed_quote")
MARKED = ("unknown_title", "prompt_copy", "unchanged")
CHECKS = DEGENERATE + MARKED

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CLAUSE_SPLIT = re.compile(r"[,;:.!?]|\band\b|\bbut\b|\bwhile\b|\balso\b")
_SUBJECT = re.compile(r"^(?:this user|the user|they|he|she|it|this|which|who)\s+")
_QUOTED = re.compile(r"[\"“]([^\"“”]{2,80})[\"”]")
# Two or more capitalized words in a row that do not start a sentence ("from Netflix Prime Video").
_SMALL = frozenset("the a an of and in on at to for".split())
_NAMED = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)+)")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def repeated_clause(text: str, min_words: int = 3) -> bool:
    """Does a clause of at least ``min_words`` words occur twice (subjects like "they" set aside)?"""
    seen = set()
    for clause in _CLAUSE_SPLIT.split(text.lower()):
        norm = _SUBJECT.sub("", " ".join(words(clause)))
        if len(norm.split()) < min_words:
            continue
        if norm in seen:
            return True
        seen.add(norm)
    return False


def unclosed_quote(text: str) -> bool:
    """An odd number of straight double quotes, or an opening curly quote without its closing one."""
    return text.count('"') % 2 == 1 or text.count("“") != text.count("”")


def unknown_titles(text: str, item_lines: Sequence[str]) -> list[str]:
    """Quoted names that occur in none of the item lines (compared as lower-case words)."""
    history = " " + " ".join(" ".join(words(line)) for line in item_lines) + " "
    out = []
    for quoted in _QUOTED.findall(text):  # a quoted title must appear as it is
        name = " ".join(words(quoted))
        if name and f" {name} " not in history:
            out.append(quoted.strip())
    known = set(history.split())
    for named in _NAMED.findall(text):  # an unquoted name: each of its words must occur ("The Remains" is known)
        if any(w not in known for w in words(named) if w not in _SMALL):
            out.append(named)
    return out


@lru_cache(maxsize=8)
def prompt_ngrams(domain: str, n: int = 4) -> frozenset[tuple[str, ...]]:
    """The word n-grams of the summary prompts' own wording (no item or summary text) for ``domain``."""
    texts = []
    for messages in (prompts.block_summary_messages([], domain), prompts.merge_messages([], domain),
                     prompts.recurrent_messages("", [], domain)):
        texts += [m["content"] for m in messages]
    grams = set()
    for text in texts:
        for part in text.split("\n"):  # n-grams do not run across the lines the data was in
            w = words(part)
            grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    return frozenset(grams)


def prompt_copy(text: str, domain: str, n: int = 4) -> list[str]:
    """The n-word runs of ``text`` that are the prompt's own wording."""
    grams = prompt_ngrams(domain, n)
    w = words(text)
    return [" ".join(w[i:i + n]) for i in range(len(w) - n + 1) if tuple(w[i:i + n]) in grams]


def unchanged(summary: str, inputs: Sequence[str]) -> bool:
    """Is ``summary`` one of its input summaries word for word (a merge or update that changed nothing)?"""
    mine = words(summary)
    return bool(mine) and any(words(s) == mine for s in inputs)


def check(summary: str, item_lines: Sequence[str], domain: str, inputs: Sequence[str] = ()) -> list[str]:
    """The names of the checks ``summary`` fails, in :data:`CHECKS` order."""
    failed = {
        "repeated_clause": repeated_clause(summary),
        "unclosed_quote": unclosed_quote(summary),
        "unknown_title": bool(unknown_titles(summary, item_lines)),
        "prompt_copy": bool(prompt_copy(summary, domain)),
        "unchanged": unchanged(summary, inputs),
    }
    return [name for name in CHECKS if failed[name]]


# ----------------------------------------------------------------- checking a generation
# A sentence ends at . ! or ?, with up to two closing marks kept on it ('"That Darn Cat!" They' splits after the
# quote, not before it: a split that swallowed the quote made a closed title look unclosed), and the next one
# starts with a capital, a digit or an opening mark ("classics like G.I.J.J. and Schind" is one unfinished sentence,
# not a finished one ending in an initialism).
_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]])|(?<=[.!?][\"')\]]{2}))\s+(?=[A-Z0-9\"'(\[])")


_ENDED = re.compile(r"[.!?][\"')\]]*$")


_TRAILING_OFF = re.compile(r"(?:\.\.\.|\u2026)[\"')\]]*$")  # "since October 20...": the model stopped mid-thought


_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass
class Cleaned:
    text: str  # the summary to use ("" when degenerate)
    problem: str  # "" | empty | cut_off | loop  (degenerate)
    edits: list[str] = field(default_factory=list)  # trimmed | deduplicated | shortened (not degenerate)


def _loops(text: str, n: int = 4, times: int = 3) -> bool:
    words = [w.lower() for w in _WORD.findall(text)]
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def clean_summary(generated: str, max_sentences: int = 3, opening: str = prompts.SUMMARY_OPENING) -> Cleaned:
    """Turn a generated continuation of ``opening`` into a summary of complete sentences, or say why not.

    Degenerate: no words at all (``empty``); a phrase of 4 words repeated 3 or
    more times (``loop``); no complete sentence left (``cut_off``). Otherwise an
    unfinished last sentence (no end mark, or one trailing off in "...") is dropped (``trimmed``), repeated sentences are
    removed (``deduplicated``) and at most ``max_sentences`` are kept (``shortened``).
    """
    body = " ".join(generated.split())
    if not _WORD.search(body):
        return Cleaned("", "empty")
    if _loops(body):
        return Cleaned("", "loop")
    glue = "" if body[:1] in ("", ",", ".", "'") else " "  # "This user" + "'s tastes ..." needs no space
    text = f"{opening}{glue}{body}"
    sentences = [s for s in _SPLIT.split(text) if s]
    edits: list[str] = []
    if sentences and (not _ENDED.search(sentences[-1]) or _TRAILING_OFF.search(sentences[-1])):
        sentences = sentences[:-1]
        edits.append("trimmed")
    if not sentences:
        return Cleaned("", "cut_off")
    seen, kept = set(), []
    for s in sentences:
        norm = " ".join(_WORD.findall(s.lower()))
        if norm in seen:
            continue
        seen.add(norm)
        kept.append(s)
    if len(kept) < len(sentences):
        edits.append("deduplicated")
    if len(kept) > max_sentences:
        kept = kept[:max_sentences]
        edits.append("shortened")
    return Cleaned(" ".join(kept), "", edits)
