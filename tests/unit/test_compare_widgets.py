"""Summary comparison measures and the notebook-05 browser, driven headlessly."""

from __future__ import annotations

import pandas as pd
import pytest

from trsr_utils.method import compare
from trsr_utils.report import widgets

CATALOG = {"1": {"genres": "Comedy, Romance"}, "2": {"genres": "Comedy"}, "3": {"genres": "Sci-Fi"},
           "4": {"genres": "Drama"}}


def test_measures():
    assert compare.content_words("This user likes comedies and Sci-Fi movies.") == {"comedies", "sci-fi"}
    assert compare.content_words("Dramas like 1995's Babe") == {"dramas", "babe"}  # no "s" from "1995's"
    assert compare.jaccard("likes comedy and war", "likes comedy") == 0.5
    assert compare.jaccard("", "") == 1.0
    assert compare.mentions("They love science fiction.", "Sci-Fi")
    assert compare.mentions("Mostly comedies.", "Comedy")
    assert not compare.mentions("They like warm stories.", "War")
    assert compare.mentions("Politics and sports news.", "sports")
    assert compare.top_category(["1", "2", "3"], CATALOG) == "Comedy"
    assert compare.top_category(["x"], CATALOG) is None


def test_comparison_table():
    blocks = pd.DataFrame({"user_id": ["a", "a", "b"], "block": [0, 1, 0], "item_ids": [["1"], ["2"], ["3", "4"]]})
    sums = {"x": pd.DataFrame({"user_id": ["a", "b"], "summary": ["Likes comedy.", "Likes drama."]}),
            "y": pd.DataFrame({"user_id": ["b", "a"], "summary": ["Likes sci-fi.", "Likes comedy a lot."]})}
    table = compare.comparison_table(sums, blocks, CATALOG).set_index("user_id")
    assert table.loc["a", "top_category"] == "Comedy" and table.loc["a", "x_mentions_top"]
    assert table.loc["a", "x_words"] == 2 and table.loc["a", "y_words"] == 4
    assert table.loc["a", "overlap_x_y"] == pytest.approx(1 / 2)  # {comedy} vs {comedy, lot}
    assert table.loc["b", "overlap_x_y"] == 0.0


def test_highlight_marks_shared_and_unique_words():
    out = compare.highlight("Likes comedy & drama.", "Loves comedy.")
    assert '<mark class="shared" style="background:#c8ecc8">comedy</mark>' in out
    assert '<mark class="unique" style="background:#fde2c4">drama.</mark>' in out
    assert "&amp;" in out and "Likes" in out and "Likes</mark>" not in out


def frames():
    blocks = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "block": [0, 1, 0], "item_ids": [["1"], ["2"], ["3"]],
                           "text": ["- title: A <b>", "- title: B", "- title: C"], "n_items": [1, 1, 1],
                           "n_tokens": [5, 5, 5]})

    def steps(texts, flags):
        return pd.DataFrame({"user_id": ["u1", "u1", "u2"], "level": [0, 1, 0], "index": [0, 0, 0],
                             "item_ids": [["1"], ["1", "2"], ["3"]], "summary": texts, "flag": flags,
                             "problem": ["loop" if f else "" for f in flags]})

    st = {"hierarchical": steps(["This user likes comedy.", "This user likes comedy and war.", "U2 likes drama."],
                                ["", "", ""]),
          "recurrent": steps(["This user likes comedy.", "This user enjoys romance and comedy.", "U2 hates drama."],
                             ["", "fallback", ""])}
    fin = {m: s.groupby("user_id").tail(1)[["user_id", "summary", "flag"]] for m, s in st.items()}
    return blocks, st, fin


def test_browser_shows_the_selected_user():
    blocks, steps, finals = frames()
    ui = widgets.SummaryComparison(blocks, steps, finals)
    assert list(ui.user.options) == ["u1", "u2"] and ui.user.value == "u1"
    left, right = ui.panes["hierarchical"].value, ui.panes["recurrent"].value
    assert '<mark class="shared" style="background:#c8ecc8">comedy</mark>' in left
    assert '<mark class="unique" style="background:#fde2c4">war.</mark>' in left
    assert "romance" in right and "[fallback]" in right and "[fallback: loop]" in right
    assert "level 1, part 0" in left and "step 1 (" in right  # intermediate steps listed, counted from 0 as blocks are
    assert "level 0, part 0" in left and "<ol" not in left  # level 0's part 0 is block 0; no second 1-based count
    assert "level 0.0" not in left and "step 1.0" not in right  # not a decimal number
    assert "block 1: 1 item," in ui.history.value and "&lt;b&gt;" in ui.history.value  # escaped history
    assert "content words shared 1" in ui.stats.value

    ui.user.value = "u2"  # what a student's click does
    assert "U2 likes" in ui.panes["hierarchical"].value and "U2 hates" in ui.panes["recurrent"].value
    assert "block 1" not in ui.history.value and "title: C" in ui.history.value
    assert "title: C" in ui.static_html() and "U2 hates" in ui.static_html()


def test_browser_shows_each_summarys_audit():
    from trsr_utils.method import audit

    blocks, steps, finals = frames()
    catalog = {"1": {"genres": "Comedy"}, "2": {"genres": "Comedy, War"}, "3": {"genres": "Drama"},
               "4": {"genres": "Romance"}}  # in the catalogue, in nobody's history
    histories = {"u1": ["1", "2"], "u2": ["3"]}
    texts = {m: dict(zip(f["user_id"], f["summary"])) for m, f in finals.items()}
    table = audit.audit(texts, histories, catalog, lambda i: f"genres: {catalog[i]['genres']}")
    ui = widgets.SummaryComparison(blocks, steps, finals, audit=table)
    assert "<b>Audit</b> (history's top attributes: Comedy, War)" in ui.stats.value
    assert "<td>recurrent</td><td>2</td><td>Romance</td>" in ui.stats.value  # names 2; romance is invented
    ui.user.value = "u2"
    assert "top attributes: Drama" in ui.stats.value and "Audit" in ui.static_html()


def test_browser_refuses_bad_input():
    blocks, steps, finals = frames()
    with pytest.raises(ValueError, match="exactly two methods"):
        widgets.SummaryComparison(blocks, {"hierarchical": steps["hierarchical"]}, finals)
    finals = {m: f.assign(user_id=f["user_id"] + m) for m, f in finals.items()}
    with pytest.raises(ValueError, match="no user has summaries from both"):
        widgets.SummaryComparison(blocks, steps, finals)


def test_comparison_reading():
    import pandas as pd


    table = pd.DataFrame({"hierarchical_mentions_top": [True, False], "recurrent_mentions_top": [True, True],
                          "overlap_hierarchical_recurrent": [0.2, 0.4]})
    text = "\n".join(compare.reading(table, ["hierarchical", "recurrent", "template"]))
    assert "hierarchical: names the user's most frequent category in 50% of 2 users." in text
    assert "share 30% of their content words" in text and "ceiling" in text and "same content words" not in text
    table["overlap_hierarchical_recurrent"] = [1.0, 0.2]  # one user whose two summaries say the same words
    text = "\n".join(compare.reading(table, ["hierarchical", "recurrent"]))
    assert "share 60%" in text and "For 1 of 2 users the two summaries have the same content words" in text
    assert "without that user the mean is 20%" in text and "fallback" not in text
    table2 = pd.DataFrame({"hierarchical_mentions_top": [True] * 300, "recurrent_mentions_top": [True] * 300,
                           "overlap_hierarchical_recurrent": [1.0] + [0.1] * 299})
    text = "\n".join(compare.reading(table2, ["hierarchical", "recurrent"]))  # 1 of 300 at 1.0: the mean stays 10%
    assert "For 1 of 300 users" in text and "without" not in text  # no "without it" that changes nothing
    table["overlap_recurrent_template"] = [0.3, 1.0]  # the second user's recurrent summary is the template
    text = "\n".join(compare.reading(table, ["hierarchical", "recurrent", "template"]))
    assert "1 of 2 recurrent summaries has every content word of the template's" in text and "fallback" in text
