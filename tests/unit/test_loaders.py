"""Loaders on fixture files in the exact real formats, including broken rows."""

from __future__ import annotations

import re

import pytest

from conftest import FIXTURES, insert_line
from trsr_utils.data import DataFormatError, load_amazon_m2, load_mind, load_movielens, parse_prev_items


# ---------------------------------------------------------------- MovieLens-100K
def test_embedded_movielens_is_the_real_dataset():
    ds = load_movielens()
    assert len(ds.catalog) == 1682 and len(ds.sequences) == 943
    assert sum(len(s.items) for s in ds.sequences) == 100_000
    assert ds.catalog.items["1"] == {"title": "Toy Story", "year": "1995", "genres": "Animation, Children's, Comedy"}
    for seq in ds.sequences[:50]:
        assert seq.timestamps == sorted(seq.timestamps)  # time-ordered
    assert min(len(s.items) for s in ds.sequences) == 20


def test_movielens_fixture_and_deterministic_order():
    a = load_movielens(FIXTURES / "ml-100k")
    b = load_movielens(FIXTURES / "ml-100k")
    assert [s.items for s in a.sequences] == [s.items for s in b.sequences]
    assert [s.user_id for s in a.sequences] == [str(i) for i in range(1, 11)]


def test_movielens_broken_rows(fixture_copy):
    folder = fixture_copy("ml-100k")
    line = insert_line(folder / "ml-100k.inter", 3, b"1\t50\t3")
    with pytest.raises(DataFormatError, match=rf"ml-100k.inter, line {line}: expected 4 tab-separated fields, found 3"):
        load_movielens(folder)
    ds = load_movielens(folder, on_error="skip")
    assert ds.report.counts == {"ml-100k.inter: wrong field count": 1}


def test_movielens_unknown_item_and_bad_utf8(fixture_copy):
    folder = fixture_copy("ml-100k")
    line = insert_line(folder / "ml-100k.inter", 1, b"1\t99999\t3\t881250949")
    with pytest.raises(DataFormatError, match=rf"line {line}, field 'item_id': item '99999' is not in the catalogue"):
        load_movielens(folder)
    (folder / "ml-100k.inter").write_bytes(
        b"\n".join(l for l in (folder / "ml-100k.inter").read_bytes().split(b"\n") if b"99999" not in l))
    line = insert_line(folder / "ml-100k.item", 2, b"5000\tCaf\xe9 broken\t1995\tDrama")
    with pytest.raises(DataFormatError, match=rf"ml-100k.item, line {line}, field 'movie_title': invalid UTF-8"):
        load_movielens(folder)


# ---------------------------------------------------------------- MIND
def test_mind_fixture_sequences_and_impressions():
    ds = load_mind(FIXTURES / "mind")
    assert len(ds.catalog) == 80 and len(ds.sequences) == 8
    assert ds.catalog.attributes == ["category", "subcategory", "title", "abstract"]
    assert "abstract" not in ds.catalog.items["N7"]  # empty abstract is skipped
    u1 = next(s for s in ds.sequences if s.user_id == "U1")
    assert u1.items[:4] == ["N17", "N63", "N30", "N79"]  # history first
    assert u1.items[4:] == ["N6", "N80"]  # then clicks, in time order
    assert u1.timestamps[:4] == [None] * 4 and u1.timestamps[4] < u1.timestamps[5]
    # non-clicked news of the impression holding the last click
    assert sorted(u1.impression_negatives) == sorted(["N50", "N20", "N29", "N65", "N42"])


@pytest.mark.parametrize(
    "raw, after, pattern",
    [
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN1 N2", 2, r"behaviors.tsv, line {line}: expected 5 tab-separated fields, found 4"),
        (b"99\tU1\t2019-11-11 09:00\tN1\tN2-1", 2, r"line {line}, field 'time': expected MM/DD/YYYY"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N3", 2, r"line {line}, field 'impressions': .*'N3'.*test split"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN1 N999\tN2-1", 2, r"line {line}, field 'history': news 'N999' is not in news.tsv"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N998-0", 0, r"line {line}, field 'impressions': news 'N998'"),
        # U1's own history text (checked once already): the impressions are still checked
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN17 N63 N30 N79\tN2-1 N998-0", 2,
         r"line {line}, field 'impressions': news 'N998' is not in news.tsv"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN17 N63 N30 N79\tN2-1 N3-2", 2,
         r"line {line}, field 'impressions': expected tokens like 'N123-1' \(1 = clicked\), found 'N3-2'$"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 -0", 2, r"line {line}, field 'impressions': .*found '-0'"),
        (b"99\tU1\t13/11/2019 9:00:00 AM\tN1\tN2-1", 2, r"line {line}, field 'time': expected MM/DD/YYYY"),
        (b"99\tU1\t11/11/2019 9:00:00 AM\tN17 N\xff3\tN2-1", 2, r"line {line}, field 'history': invalid UTF-8"),
    ],
)
def test_mind_broken_behaviors(fixture_copy, raw, after, pattern):
    folder = fixture_copy("mind")
    line = insert_line(folder / "behaviors.tsv", after, raw)
    with pytest.raises(DataFormatError, match=pattern.format(line=line)):
        load_mind(folder)
    ds = load_mind(folder, on_error="skip")
    assert ds.report.total == 1 and len(ds.sequences) == 8


def test_mind_time_parsing_matches_strptime():
    import random
    from datetime import datetime

    from trsr_utils.data.mind import TIME_FORMAT, _Times

    times, r = _Times(), random.Random(0)
    for _ in range(2000):
        text = (f"{r.randint(1, 12)}/{r.randint(1, 28)}/{r.randint(1990, 2030)} {r.randint(1, 12)}:"
                f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d} {r.choice(['AM', 'PM'])}")
        assert times[text] == datetime.strptime(text, TIME_FORMAT).timestamp(), text
    assert times["11/11/2019 12:05:00 AM"] == datetime(2019, 11, 11, 0, 5).timestamp()
    assert times[" 01/02/2019 09:05:00 PM "] == datetime(2019, 1, 2, 21, 5).timestamp()
    for bad in ["13/1/2019 1:00:00 AM", "1/1/2019 13:00:00 PM", "1/1/2019 0:00:00 AM", "2/30/2019 1:00:00 AM",
                "1/1/2019 1:60:00 AM", "2019-11-11 09:00"]:
        with pytest.raises(ValueError):
            times[bad]


def test_mind_last_negatives_follow_the_last_new_click(tmp_path):
    """The latest impression's click was already read, so the negatives come from the one before."""
    news = "".join(f"N{k}\tnews\tnewsus\tTitle {k}\t\turl\t[]\t[]\n" for k in range(1, 8))
    (tmp_path / "news.tsv").write_text(news)
    (tmp_path / "behaviors.tsv").write_text(
        "1\tU1\t11/12/2019 9:00:00 AM\tN1\tN1-1 N4-0 N5-0\n"  # later, but N1 is in the history
        "2\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N3-0\n"
        "3\tU2\t11/11/2019 9:00:00 AM\t\tN6-0 N7-1\n")
    ds = load_mind(tmp_path)
    u1, u2 = ds.sequences
    assert u1.items == ["N1", "N2"] and u1.impression_negatives == ["N3"]
    assert u2.items == ["N7"] and u2.timestamps[0] is not None and u2.impression_negatives == ["N6"]
    keys = {k: k for k in ds.catalog.items}
    assert all(keys[i] is i for s in ds.sequences for i in (*s.items, *s.impression_negatives))  # shared strings


def test_mind_broken_news(fixture_copy):
    folder = fixture_copy("mind")
    line = insert_line(folder / "news.tsv", 5, b"N500\tnews\tnewsus\t\tabstract\turl\t[]\t[]")
    with pytest.raises(DataFormatError, match=rf"news.tsv, line {line}, field 'title': empty title"):
        load_mind(folder)
    line2 = insert_line(folder / "news.tsv", 1, b"N501\tnews\tnewsus\tOk title\tbad \xff\xfe bytes\turl\t[]\t[]")
    ds = load_mind(folder, on_error="skip")
    assert ds.report.counts == {"news.tsv: empty title": 1, "news.tsv: invalid UTF-8": 1}
    assert any(f"line {line2}, field 'abstract': invalid UTF-8" in e for e in ds.report.examples)
    with pytest.warns(UserWarning, match="skipped 2 bad input rows"):
        ds.report.warn()


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="trsr_utils download mind"):
        load_mind(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/README.md"):
        load_amazon_m2(tmp_path)


# ---------------------------------------------------------------- Amazon-M2
def test_parse_prev_items_numpy_style():
    assert parse_prev_items("['B09W9FND7K' 'B09JSPLN1M']") == ["B09W9FND7K", "B09JSPLN1M"]
    assert parse_prev_items("['A' 'B' 'C'\n 'D' 'E']") == ["A", "B", "C", "D", "E"]
    assert parse_prev_items("[]") == []
    for bad in ["['A', 'B']", "A B", "['A' 'B'", "[A B]", "['A' '']"]:
        with pytest.raises(ValueError):
            parse_prev_items(bad)


def test_amazon_fixture_locale_filter_and_wrapped_arrays():
    ds = load_amazon_m2(FIXTURES / "amazon_m2", locale="UK")
    assert len(ds.catalog) == 60 and all(i.startswith("B0") for i in ds.catalog.items)
    assert len(ds.sequences) == 12
    assert len(ds.sequences[1].items) == 10  # a prev_items array wrapped over two lines + next_item
    assert ds.catalog.items["B000000005"]["title"] == "Widget 5, deluxe edition"  # quoted comma
    assert ds.catalog.items["B000000001"]["description"] == "Line one line two"  # newline normalised
    assert "brand" not in ds.catalog.items["B000000002"]  # empty value skipped
    de = load_amazon_m2(FIXTURES / "amazon_m2", locale="DE")
    assert len(de.catalog) == 10 and len(de.sequences) == 1
    with pytest.raises(DataFormatError, match="no product has locale 'FR'"):
        load_amazon_m2(FIXTURES / "amazon_m2", locale="FR")


@pytest.mark.parametrize(
    "raw, pattern",
    [
        (b"\"['B000000001' 'B000000002']\",B000000003", r"sessions_train.csv, line {line}: expected 3 comma-separated fields, found 2"),
        (b"\"['B000000001', 'B000000002']\",B000000003,UK", r"line {line}, field 'prev_items': expected a numpy-style list"),
        (b"\"['B000000001' 'B777777777']\",B000000003,UK", r"line {line}, field 'prev_items': product 'B777777777' is not in products_train.csv \(UK\)"),
        (b"\"['B000000001']\",,UK", r"line {line}, field 'next_item': empty item id"),
        (b"\"['B000000001']\",B777777777,UK", r"line {line}, field 'next_item': product 'B777777777' is not in"),
        (b"\"['B000000001' 'B00000\xff002']\",B000000003,UK", r"line {line}, field 'prev_items': invalid UTF-8"),
    ],
)
def test_amazon_broken_sessions(fixture_copy, raw, pattern):
    folder = fixture_copy("amazon_m2")
    # after line 3: the header, one single-line record, and the first line of a wrapped one would be wrong,
    # so insert after the wrapped record ends (line 4) to check line numbers past a multi-line field
    line = insert_line(folder / "sessions_train.csv", 4, raw)
    with pytest.raises(DataFormatError, match=pattern.format(line=line)):
        load_amazon_m2(folder)
    ds = load_amazon_m2(folder, on_error="skip")
    assert ds.report.total == 1 and len(ds.sequences) == 12


def test_amazon_empty_title_and_line_numbers_after_multiline_fields(fixture_copy):
    folder = fixture_copy("amazon_m2")
    text = (folder / "products_train.csv").read_bytes()
    # records with a multi-line description make physical lines differ from record numbers
    n_lines = text.count(b"\n")
    line = insert_line(folder / "products_train.csv", n_lines, b"B000000099,UK,,1.00,,,,,,,")
    with pytest.raises(DataFormatError, match=rf"products_train.csv, line {line}, field 'title': empty title"):
        load_amazon_m2(folder)


def test_error_message_shape():
    err = DataFormatError("/d/news.tsv", 12, "title", "empty title")
    assert str(err) == "/d/news.tsv, line 12, field 'title': empty title"
    assert re.match(r".*line 12", str(DataFormatError("f", 12, None, "x")))


def test_paused_gc_restores_the_callers_setting_even_on_errors():
    import gc

    from trsr_utils.data.core import paused_gc

    assert gc.isenabled()
    with pytest.raises(DataFormatError):
        with paused_gc():
            assert not gc.isenabled()
            raise DataFormatError("f", 1, None, "x")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
