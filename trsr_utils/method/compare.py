"""Comparing summaries: lengths, word overlap, and whether they name the user's main category (notebook 05)."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from trsr_utils.method.text import category_counts

_WORD = re.compile(r"[a-z][a-z'-]*")
# Words that say nothing about a taste; the summary opening is in every summary.
STOPWORDS = frozenset("""
a about above after again all also an and any are as at be because been before being both but by can could
did do does doing during each enjoy enjoys few for from further had has have having he her here hers him his
how i if in into is it its itself just like likes more most no nor not of on once only or other our out over
own prefers preference preferences particularly same she should so some such than that the their theirs them
then there these they this those through to too under until up user users very was we were what when where
which while who whom why will with would you your they're user's tastes taste interest interests interested
movies movie films film news articles article products product kinds kind story stories genres genre eras era
""".split())

# How a summary may name a category: MovieLens genres need a few spellings; others match as words.
MENTION_ALIASES = {
    "sci-fi": r"sci-?fi|science[- ]fiction|sci fi", "children's": r"child|kids?\b|family", "film-noir": r"noir",
    "comedy": r"comed|comic|funny|humou?r", "romance": r"romanc|romantic|love stor", "thriller": r"thrill|suspense",
    "documentary": r"documentar", "musical": r"musical|music", "animation": r"animat|cartoon",
    "fantasy": r"fantas", "mystery": r"myster", "horror": r"horror|scary", "war": r"\bwars?\b|wartime|military",
    "western": r"western", "crime": r"crime|criminal|gangster", "adventure": r"adventur", "action": r"action",
    "drama": r"drama",
}


def content_words(text: str) -> set[str]:
    """Lower-case words of a summary that can carry a taste (stopwords and single letters removed: the "s" of
    "1995's", where the regex starts a word after the digits, is no word of the summary)."""
    return {w for w in (w.strip("'-") for w in _WORD.findall(text.lower())) if len(w) > 1} - STOPWORDS


def jaccard(a: str, b: str) -> float:
    """Overlap of two summaries' content words (1 = same words, 0 = none shared)."""
    wa, wb = content_words(a), content_words(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def mentions(summary: str, category: str) -> bool:
    """Does the summary name ``category`` (or a usual spelling of it)?"""
    key = category.lower()
    pattern = MENTION_ALIASES.get(key, r"\b" + re.escape(key))
    return re.search(pattern, summary.lower()) is not None


def top_category(item_ids: Sequence[str], catalog: Mapping[str, Mapping[str, str]]) -> str | None:
    counts = category_counts(item_ids, catalog)
    return counts.most_common(1)[0][0] if counts else None


def comparison_table(summaries: Mapping[str, Any], blocks: Any,
                     catalog: Mapping[str, Mapping[str, str]]) -> Any:
    """Per user and method: words, content words, whether it names the top category; plus pairwise overlap.

    ``summaries`` maps a method name to its frame (user_id, summary).
    """
    import pandas as pd

    items = blocks.sort_values(["user_id", "block"]).groupby("user_id")["item_ids"].agg(
        lambda col: [i for ids in col for i in ids])
    top = items.map(lambda ids: top_category(ids, catalog)).rename("top_category")
    frame = pd.DataFrame(top)
    for method, df in summaries.items():
        text = df.set_index("user_id")["summary"].reindex(frame.index).fillna("")
        frame[f"{method}_words"] = text.map(lambda t: len(t.split()))
        frame[f"{method}_mentions_top"] = [bool(c) and mentions(t, c) for t, c in zip(text, frame["top_category"])]
        frame[f"{method}_text"] = text
    methods = list(summaries)
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            frame[f"overlap_{a}_{b}"] = [jaccard(x, y) for x, y in zip(frame[f"{a}_text"], frame[f"{b}_text"])]
    return frame.drop(columns=[f"{m}_text" for m in methods]).reset_index()


def highlight(text: str, other: str, shared_style: str = "background:#c8ecc8",
              unique_style: str = "background:#fde2c4") -> str:
    """HTML of ``text`` with content words shared with ``other`` and unique to ``text`` marked."""
    import html

    shared = content_words(text) & content_words(other)
    out = []
    for token in re.split(r"(\s+)", text):
        word = token.lower().strip(".,;:!?\"()").strip("'-")
        esc = html.escape(token)
        if word in shared:
            out.append(f'<mark class="shared" style="{shared_style}">{esc}</mark>')
        elif word and word in content_words(token):
            out.append(f'<mark class="unique" style="{unique_style}">{esc}</mark>')
        else:
            out.append(esc)
    return "".join(out)


def reading(table: Any, methods: Sequence[str]) -> list[str]:
    """What the comparison shows, in sentences computed from the per-user table."""
    n = len(table)
    out = []
    llm = [m for m in methods if m != "template"]
    for m in llm:
        rate = float(table[f"{m}_mentions_top"].mean())
        out.append(f"{m}: names the user's most frequent category in {rate:.0%} of {n} users.")
    if "template" in methods:
        out.append("The template names it in every summary by construction: it is the ceiling of that measure, "
                   "not a competitor.")
    for a, b in zip(llm, llm[1:]):
        col = f"overlap_{a}_{b}"
        if col in table:
            same = table[col] == 1.0
            mean = float(table[col].mean())
            line = (f"{a} and {b} share {mean:.0%} of their content words on average: "
                    + ("they mostly say the same thing." if mean >= 0.5 else
                       "they often describe the same user differently."))
            if same.any() and not same.all():  # a spike at 1 (the histogram) would carry the mean alone
                rest = float(table.loc[~same, col].mean())
                k = int(same.sum())
                line += (f" For {k} of {n} user{'s' if n != 1 else ''} the two summaries have the same content "
                         f"words (the '{a} vs {b}' bar at 1.0 in the overlap histogram, counted in its legend)"
                         + (f"; without {'them' if k > 1 else 'that user'} the mean is {rest:.0%}."
                            if f"{rest:.0%}" != f"{mean:.0%}" else "."))
            out.append(line)
    # An LLM summary with every content word of the template's is the template itself: the fallback that replaces
    # a summary still degenerate after its retry (notebooks 03-04 count them). Its bar at 1.0 would else read as
    # an LLM summary that happens to match.
    for m in llm:
        col = f"overlap_{m}_template"
        if col in table and (same := int((table[col] == 1.0).sum())):
            out.append(f"{same} of {n} {m} summaries {'has' if same == 1 else 'have'} every content word of the "
                       f"template's (the '{m} vs template' bar at 1.0): the template fallback, which "
                       "replaces a summary that failed its checks after a retry.")
    return out
