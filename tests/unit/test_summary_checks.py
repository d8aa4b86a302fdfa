"""The summary checks catch what a reader of the demo's summaries found (issue: notebooks say what they show)."""

from __future__ import annotations

import pytest

from trsr_utils.method import summary_checks as sc

HISTORY = ["title: Toy Story; year: 1995; genres: Animation, Children's, Comedy",
           "title: Remains of the Day, The; year: 1993; genres: Drama"]


@pytest.mark.parametrize("text, failed", [
    # found in the demo (user 520): a clause said three times, which the 4-gram loop check let through
    ("This user enjoys both genres and enjoy both genres, and they enjoy both genres.", ["repeated_clause"]),
    # titles cut mid-quote and not in the history
    ('This user likes "Remakes" ... "Amades," and "The.', ["unclosed_quote", "unknown_title"]),
    # an invented title
    ('This user loved "Casablanca" and other classics.', ["unknown_title"]),
    # an invented fact (found in the demo), named without quotes
    ("This user likes a show that debuted on December 28th from Netflix Prime Video.", ["unknown_title"]),
    # prompt parroting: the prompt's own wording instead of the items'
    ("This user likes both genres, eras, and kinds of story.", ["prompt_copy"]),
    # clean: a quoted title that is in the history, words of its own
    ('This user enjoys animated comedies like "Toy Story" and quiet dramas.', []),
    ("This user enjoys Toy Story and The Remains of the Day.", []),  # named without quotes, in the history
    ("This user likes comedies. They also like dramas and romance.", []),
])
def test_checks_on_found_cases(text, failed):
    assert sc.check(text, HISTORY, "movies") == failed


def test_a_merge_that_returns_one_input_is_unchanged():
    block0 = "This user enjoys animated comedies."
    assert sc.check("This user enjoys animated  comedies.", HISTORY, "movies", [block0, "They like dramas."]) == [
        "unchanged"]
    assert sc.check("This user enjoys animated comedies and dramas.", HISTORY, "movies", [block0]) == []


def test_degenerate_and_marked_checks_partition_all():
    assert set(sc.DEGENERATE) | set(sc.MARKED) == set(sc.CHECKS) and not set(sc.DEGENERATE) & set(sc.MARKED)
    assert sc.prompt_ngrams("news") != sc.prompt_ngrams("movies")
