"""Summarizers: the generation check, the call cache, both methods end to end, kill-and-resume."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from trsr_utils.store import callcache
from trsr_utils.method import llm, summary_checks
from trsr_utils.core.config import resolve_config
from trsr_utils.method import summarizer
from trsr_utils.store.callcache import CallCache
from trsr_utils.method.summary_checks import clean_summary
from trsr_utils.stages import summarize

CATALOG = {str(i): {"title": f"Movie {i}", "year": "1995",
                    "genres": ["Comedy, Romance", "Drama", "Action, Sci-Fi", "Horror"][i % 4]} for i in range(60)}


def make_blocks(n_users: int, n_blocks: int, per_block: int = 3) -> pd.DataFrame:
    rows = []
    for u in range(n_users):
        for b in range(n_blocks - (u % 2)):  # every other user has one block fewer
            ids = [str((u * 7 + b * per_block + k) % 60) for k in range(per_block)]
            lines = [f"title: {CATALOG[i]['title']}; genres: {CATALOG[i]['genres']}" for i in ids]
            rows.append({"user_id": f"u{u}", "split": "train" if u % 3 else "test", "block": b, "item_ids": ids,
                         "lines": lines, "text": "\n".join("- " + line for line in lines), "n_items": len(ids),
                         "n_tokens": 30, "truncated_items": 0})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- the generation check
@pytest.mark.parametrize("generated, expected, problem, edits", [
    (" likes comedies. They also like romance.", "This user likes comedies. They also like romance.", "", []),
    (" likes comedies. They also like rom", "This user likes comedies.", "", ["trimmed"]),
    (" likes comedies and romance and", "", "cut_off", ["trimmed"]),
    ("   \n ", "", "empty", []),
    (" likes the thrill of speed and the thrill of speed and the thrill of speed.", "", "loop", []),
    (" likes drama. It likes war. It likes war!", "This user likes drama. It likes war.", "",
     ["deduplicated"]),
    (" likes A. B is good. C is good too. D is fine.", "This user likes A. B is good. C is good too.", "",
     ["shortened"]),
    ("'s favourite genre is drama.", "This user's favourite genre is drama.", "", []),
    # a sentence that trails off, or that only an initialism seemed to end, is unfinished
    (" likes comedies. They have watched the latest releases since October 20...", "This user likes comedies.", "",
     ["trimmed"]),
    (" likes comedies. They love classics like G.I.J.J. and Schind", "This user likes comedies.", "", ["trimmed"]),
    (" likes films from the U.S. They also like dramas.", "This user likes films from the U.S. They also like dramas.",
     "", []),
    # a closing quote or bracket after the full stop stays with its sentence
    (' likes "That Darn Cat!" They also like (old films.) And', 'This user likes "That Darn Cat!" They also like '
     "(old films.)", "", ["trimmed"]),
])
def test_clean_summary(generated, expected, problem, edits):
    cleaned = clean_summary(generated, max_sentences=3)
    assert cleaned.problem == problem
    assert cleaned.text == expected
    if not problem:
        assert cleaned.edits == edits
        assert not summary_checks.unclosed_quote(cleaned.text)  # what the split keeps, the check sees closed


def test_sentence_counting_ignores_decimals_and_counts_the_end():
    assert llm.count_sentences("Rated 4.5 by critics") == 0
    assert llm.count_sentences("Likes drama. Likes war!") == 2
    assert llm.count_sentences('He said "yes." Then left?') == 2


# ----------------------------------------------------------------- the call cache
def test_call_key_depends_on_model_prompt_and_every_parameter():
    base = callcache.call_key("m", "p", {"max_new_tokens": 8, "do_sample": False})
    assert base == callcache.call_key("m", "p", {"do_sample": False, "max_new_tokens": 8})  # order-free
    assert len({base, callcache.call_key("m2", "p", {"max_new_tokens": 8, "do_sample": False}),
                callcache.call_key("m", "p ", {"max_new_tokens": 8, "do_sample": False}),
                callcache.call_key("m", "p", {"max_new_tokens": 9, "do_sample": False})}) == 4


def test_cache_persists_across_connections(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    call = summarizer.Call(" likes x.", "eos", 10, 3, 0.5, False)
    cache.put_many([("k1", "m", "prompt", {"a": 1}, call)])
    cache.put_many([("k1", "m", "prompt", {"a": 1}, summarizer.Call("other", "eos", 1, 1, 1, False))])  # ignored
    cache.close()
    again = CallCache(tmp_path / "c.sqlite")
    assert len(again) == 1
    got = again.get_many(["k1", "k2"])
    assert list(got) == ["k1"] and got["k1"].text == " likes x." and got["k1"].cached


# ----------------------------------------------------------------- the template baseline
def test_template_counts_categories_and_names_what_is_new():
    t = summarizer.TemplateSummarizer(CATALOG, "movies")
    old, recent = ["1", "5", "9", "0"], ["2", "6"]  # Drama x3, Comedy, Romance; then Action/Sci-Fi twice
    assert t(old + recent, recent) == ("This user most often chose Drama (3), Action (2) and Sci-Fi (2) movies. "
                                       "Most recently: Action (2) and Sci-Fi (2), new for them: Action, Sci-Fi.")
    assert "Most recently" not in t(recent, recent)  # all items are recent: nothing to contrast
    assert "no category information" in summarizer.TemplateSummarizer({}, "news")(["x"])


# ----------------------------------------------------------------- both methods with a scripted model
class Scripted:
    """Stands in for llm.generate: a fixed, prompt-dependent answer; loops on the first try for marked prompts."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, model, tok, texts, max_new_tokens=64, on_batch=None, **kw):
        out = []
        for t in texts:
            self.calls.append((t, {**kw, "max_new_tokens": max_new_tokens}))
            if "Movie 13" in t and not kw.get("repetition_penalty"):
                text = " a a a a a a a a a a a a a a"  # loops: must be retried
            elif "Movie 26" in t:
                text = " keeps going and going without"  # never finishes a sentence: fallback
            else:
                text = f" likes prompt {len(t)}. Second sentence."
            out.append(llm.Generation(text, len(t), 5, 0.01, "eos"))
        if on_batch:
            on_batch(out, list(range(len(out))))
        return out


@pytest.fixture
def scripted(monkeypatch):
    fake = Scripted()
    monkeypatch.setattr(llm, "generate", fake)
    return fake


def cfg_for(tmp_path, **over):
    return resolve_config("smoke", tmp_path / "run", {"summary.merge_fan_in": 2, **over})


def test_hierarchical_merges_level_by_level_and_flags_problems(tmp_path, scripted, smol_tokenizer):
    cfg = cfg_for(tmp_path)
    blocks = make_blocks(4, 5)  # users with 5 and 4 blocks
    report = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=object(), tokenizer=smol_tokenizer,
                                 log=lambda *_: None)
    steps = summarize.read_steps(cfg, "hierarchical")
    final = summarize.read_summaries(cfg, "hierarchical")
    assert list(final["user_id"]) == ["u0", "u1", "u2", "u3"]
    five = steps[steps["user_id"] == "u0"]
    # 5 blocks, fan-in 2: 5 -> 3 (2 merges, 1 carried) -> 2 (1 merge) -> 1 (1 merge)
    assert five.groupby("level").size().to_dict() == {0: 5, 1: 2, 2: 1, 3: 1}
    four = steps[steps["user_id"] == "u1"]
    assert four.groupby("level").size().to_dict() == {0: 4, 1: 2, 2: 1}
    assert final.set_index("user_id").loc["u0", "summary"] == five.iloc[-1]["summary"]
    assert sorted(five.iloc[-1]["item_ids"]) == sorted(i for ids in blocks[blocks.user_id == "u0"].item_ids
                                                       for i in ids)
    retried = steps[steps["flag"] == "retried"]
    assert len(retried) and (retried["problem"] == "loop").all() and (retried["calls"] == 2).all()
    fallback = steps[steps["flag"] == "fallback"]
    assert len(fallback) and fallback["summary"].str.startswith("This user most often chose").all()
    assert (fallback["problem"] == "cut_off").all() and (fallback["retry_problem"] == "cut_off").all()
    ok = steps[steps["flag"] == ""]
    assert ok["summary"].str.match(r"This user likes prompt \d+\. Second sentence\.$").all()
    assert report["degeneracy"]["fixed_by_retry"] == len(retried)
    assert report["degeneracy"]["fallbacks"] == len(fallback)
    # Every generated call was a cache miss, and no prompt was generated twice (identical prompts share a call).
    assert report["cache_misses"] == len(scripted.calls) == len({(t, str(kw)) for t, kw in scripted.calls})
    assert report["cache_misses"] <= len(steps) + len(retried) + len(fallback)
    # The retry used the stated fallback setting.
    retry_kw = [kw for t, kw in scripted.calls if kw.get("repetition_penalty")]
    assert retry_kw and all(kw["no_repeat_ngram_size"] == 3 and kw["max_new_tokens"] == 18 for kw in retry_kw)


class MergeScripted(Scripted):
    """Block summaries as Scripted; of the first batch of merges, the first repeats a clause (until retried) and the
    second returns its first input (ignoring the newer period)."""

    def __call__(self, model, tok, texts, max_new_tokens=64, on_batch=None, **kw):
        import re as _re

        out = []
        merge = 0
        for t in texts:
            self.calls.append((t, {**kw, "max_new_tokens": max_new_tokens}))
            first = _re.search(r"\n1\. This user([^\n]*)", t)
            text = f" likes prompt {len(t)}. Second sentence."
            if first and not kw.get("repetition_penalty"):
                merge += 1
                if merge == 1:
                    text = " enjoys both genres and enjoy both genres, and they enjoy both genres."
                elif merge == 2:
                    text = first.group(1)
            out.append(llm.Generation(text, len(t), 5, 0.01, "eos"))
        if on_batch:
            on_batch(out, list(range(len(out))))
        return out


def test_summary_checks_retry_repeated_clauses_and_flag_unchanged_merges(tmp_path, monkeypatch, smol_tokenizer):
    fake = MergeScripted()
    monkeypatch.setattr(llm, "generate", fake)
    cfg = cfg_for(tmp_path)
    blocks = make_blocks(4, 2)  # u0 and u2 have two blocks (one merge each), u1 and u3 one
    report = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=object(), tokenizer=smol_tokenizer,
                                 log=lambda *_: None)
    steps = summarize.read_steps(cfg, "hierarchical").set_index(["user_id", "level", "index"])
    u0, u2 = steps.loc[("u0", 1, 0)], steps.loc[("u2", 1, 0)]
    assert u0["problem"] == "repeated_clause" and u0["flag"] == "retried" and u0["checks"] == ""
    assert u2["flag"] == "" and u2["checks"] == "unchanged" and u2["summary"] == steps.loc[("u2", 0, 0), "summary"]
    assert report["degeneracy"]["by_problem"] == {"repeated_clause": 1}
    assert report["degeneracy"]["flag_rates"]["unchanged"] == pytest.approx(1 / len(steps))
    assert summarize.read_summaries(cfg, "hierarchical").set_index("user_id").loc["u2", "checks"] == "unchanged"
    table = summarizer.check_table(report)
    assert table.loc[0, "problem: repeated_clause"] == 1
    assert table.loc[0, f"degenerate_rate (of {len(steps)} calls)"].endswith("%")  # a percentage, as the flags are
    assert table.loc[0, f"flagged: unchanged (of {len(steps)} calls)"] == f"{1 / len(steps):.1%}"
    # with the steps: a share of the two merges (u0's and u2's), the only calls that can return an input unchanged
    table = summarizer.check_table(report, summarize.read_steps(cfg, "hierarchical"))
    assert table.loc[0, "flagged: unchanged (of 2 merges)"] == "50.0%"
    assert table.loc[0, f"flagged: prompt_copy (of {len(steps)} calls)"].endswith("%")


def test_rerun_costs_nothing_and_recurrent_reuses_block_zero(tmp_path, scripted, smol_tokenizer):
    cfg = cfg_for(tmp_path)
    blocks = make_blocks(3, 3)
    kw = dict(model=object(), tokenizer=smol_tokenizer, log=lambda *_: None)
    first = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, **kw)
    made = len(scripted.calls)
    again = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, **kw)
    assert len(scripted.calls) == made and again["cache_misses"] == 0
    assert again["cache_hits"] == first["cache_misses"]
    rec = summarize.summarize(cfg, "recurrent", blocks, CATALOG, **kw)
    steps = summarize.read_steps(cfg, "recurrent")
    assert steps.groupby("user_id").size().to_dict() == {"u0": 3, "u1": 2, "u2": 3}
    assert rec["cache_hits"] >= 3  # step 0 of each user = hierarchical block 0
    step1 = [t for t, _ in scripted.calls[made:]]
    assert all("What we know about a user's tastes" in t for t in step1)
    # Step k is given step k-1's summary.
    u0 = steps[steps.user_id == "u0"].reset_index()
    last_prompt = [t for t in step1 if u0.loc[1, "summary"] in t]
    assert last_prompt, "step 2 did not receive step 1's summary"


def test_a_resumed_request_says_how_many_calls_the_cache_answered(tmp_path, scripted, smol_tokenizer, capsys,
                                                                  monkeypatch):
    """The progress line counts the new calls only; a request the cache partly answered says how much of it."""
    monkeypatch.setenv("TRSR_HEADLESS", "1")  # one line per request, as in a pipeline run's log
    monkeypatch.setenv("TRSR_PROGRESS", "1")
    cfg = cfg_for(tmp_path)
    kw = dict(model=object(), tokenizer=smol_tokenizer, log=lambda *_: None)
    first, more = make_blocks(2, 2), make_blocks(4, 2)  # the second adds two users to the first's
    summarize.summarize(cfg, "hierarchical", first, CATALOG, **kw)
    assert "from the cache" not in capsys.readouterr().out  # a fresh cache answers nothing
    summarize.summarize(cfg, "hierarchical", more, CATALOG, **kw)
    found = re.search(r"blocks \((\d+) of (\d+) from the cache\): (\d+) calls? in", capsys.readouterr().out)
    assert found, "the block request's progress line does not say what the cache answered"
    hits, asked, new = map(int, found.groups())
    assert (hits, asked, new) == (len(first), len(more), len(more) - len(first))


def test_asker_makes_one_call_as_the_batched_stage_does(tmp_path, scripted, smol_tokenizer):
    """One prompt through Asker gives the stage's summary and flag: retry of a loop, template after two failures."""
    from trsr_utils.method import prompts

    cfg = cfg_for(tmp_path)
    blocks = make_blocks(4, 5)
    summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=object(), tokenizer=smol_tokenizer,
                        log=lambda *_: None)
    steps = summarize.read_steps(cfg, "hierarchical").set_index(["user_id", "level", "index"])
    made = len(scripted.calls)
    ask = summarizer.Asker(cfg, blocks, CATALOG, model=object(), tokenizer=smol_tokenizer)
    flags = set()
    for block in blocks.itertuples():
        prompt = prompts.generation_prompt(smol_tokenizer, prompts.block_summary_messages(list(block.lines), "movies"))
        got = ask(prompt, block.item_ids, block.item_ids)
        stored = steps.loc[(block.user_id, 0, block.block)]
        assert (got.text, got.flag, got.item_ids) == (stored["summary"], stored["flag"], list(block.item_ids))
        flags.add(got.flag)
    assert flags == {"", "retried", "fallback"}
    # Every prompt was one the stage had sent: all from the cache, nothing generated again.
    assert len(scripted.calls) == made and ask.misses == 0 and ask.hits >= len(blocks)
    fresh = ask("a prompt nobody sent", ["i1"], ["i1"])
    assert ask.misses == 1 and fresh.text.startswith("This user likes prompt")


# ----------------------------------------------------------------- the tiny random model end to end
def test_tiny_random_end_to_end_both_methods(tmp_path):
    cfg = cfg_for(tmp_path, **{"summary.max_new_tokens": 6})
    blocks = make_blocks(3, 3)
    model, tok = llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)
    for method in ("hierarchical", "recurrent"):
        report = summarize.summarize(cfg, method, blocks, CATALOG, model=model, tokenizer=tok, log=lambda *_: None)
        final = summarize.read_summaries(cfg, method)
        assert len(final) == 3 and final["summary"].str.startswith("This user").all()
        assert report["degeneracy"]["calls"] == len(summarize.read_steps(cfg, method))
        steps = summarize.read_steps(cfg, method)
        # Random weights never write a usable sentence in 6 tokens: every step is flagged, none passes silently.
        assert (steps["flag"] != "").all()
        assert (steps["prompt_tokens"] > 0).all() and (steps["new_tokens"] > 0).all()


def test_the_summarizer_loads_only_when_a_call_is_missing_from_the_cache(tmp_path):
    """The cluster's command line fills the call cache; notebooks 03 and 04 then run every call from it and must
    not load the summarizer (minutes and 33 GB for the paper's 30B model): it loads at the first uncached call."""
    cfg = cfg_for(tmp_path, **{"summary.max_new_tokens": 4})
    blocks, tok = make_blocks(2, 2), llm.load_tokenizer(llm.TINY)
    loads = []
    lazy = lambda: llm.Lazy(lambda: loads.append(1) or llm.load_model(llm.TINY, device="cpu"))  # noqa: E731
    first = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=lazy(), tokenizer=tok, log=lambda *_: None)
    assert loads == [1] and first["cache_misses"] > 0
    again = lazy()
    report = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=again, tokenizer=tok, log=lambda *_: None)
    assert report["cache_misses"] == 0 and loads == [1] and not again.loaded
    ask = summarizer.Asker(cfg, blocks, CATALOG, tokenizer=tok)  # the notebooks' one-call helper: lazy by default
    assert isinstance(ask.model, llm.Lazy) and not ask.model.loaded


# ----------------------------------------------------------------- kill and resume
CHILD = textwrap.dedent("""
    import json, sys, pandas as pd
    from trsr_utils.method import llm, summary_checks
    from trsr_utils.stages import summarize
    from trsr_utils.core.config import resolve_config
    CATALOG = json.loads(sys.argv[3])
    cfg = resolve_config("smoke", sys.argv[1], {"summary.batch_size": 1, "summary.max_new_tokens": 24})
    blocks = pd.read_parquet(sys.argv[2])
    for column in ("item_ids", "lines"):
        blocks[column] = blocks[column].map(list)
    summarize.summarize(cfg, "hierarchical", blocks, CATALOG, model=llm.load_model(llm.TINY, device="cpu"),
                        tokenizer=llm.load_tokenizer(llm.TINY))
""")


def test_killed_run_resumes_without_repeating_or_losing_calls(tmp_path):
    from trsr_utils.core.config import REPO_ROOT

    blocks = make_blocks(12, 4)
    blocks_file = tmp_path / "blocks.parquet"
    blocks.to_parquet(blocks_file)
    run = tmp_path / "killed"
    db = run / callcache.CACHE_FILE
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRSR_PROGRESS": "0"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(blocks_file), json.dumps(CATALOG)], env=env, cwd=REPO_ROOT)
    deadline = time.time() + 240
    rows = 0
    while time.time() < deadline and child.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                    rows = con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            except sqlite3.OperationalError:
                rows = 0
            if rows >= 5:
                break
        time.sleep(0.05)
    assert child.poll() is None, "the child finished (or failed) before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (run / "03_hierarchical" / "summaries.parquet").exists()
    survived = len(CallCache(db))
    assert survived >= 5

    over = {"summary.batch_size": 1, "summary.max_new_tokens": 24}
    model, tok = llm.load_model(llm.TINY, device="cpu"), llm.load_tokenizer(llm.TINY)
    resumed = summarize.summarize(resolve_config("smoke", run, over), "hierarchical", blocks, CATALOG,
                                  model=model, tokenizer=tok, log=lambda *_: None)
    fresh_cfg = resolve_config("smoke", tmp_path / "fresh", over)
    fresh = summarize.summarize(fresh_cfg, "hierarchical", blocks, CATALOG, model=model, tokenizer=tok,
                                log=lambda *_: None)
    assert resumed["cache_hits"] >= survived  # every finished call came back from the cache ...
    assert resumed["cache_misses"] + survived == fresh["cache_misses"]  # ... and none was made twice
    a = summarize.read_steps(resolve_config("smoke", run, over), "hierarchical")
    b = summarize.read_steps(fresh_cfg, "hierarchical")
    cols = ["user_id", "level", "index", "raw", "summary", "flag"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


# ----------------------------------------------------------------- the embedded default
@pytest.mark.slow
def test_smollm2_writes_a_usable_summary(tmp_path):
    cfg = resolve_config("demo", tmp_path / "run", {"summary.batch_size": 2})
    blocks = make_blocks(2, 1, per_block=5)
    report = summarize.summarize(cfg, "hierarchical", blocks, CATALOG, log=lambda *_: None)
    final = summarize.read_summaries(cfg, "hierarchical")
    assert report["model"].startswith("smollm2-135m-instruct@")
    assert final["summary"].str.startswith("This user").all()
    assert report["generated_tokens"] > 0 and report["tokens_per_second"] > 0
    assert (final["summary"].str.len() > 20).all()


def test_reading_counts_fallbacks_and_flags():
    report = {"method": "hierarchical", "degeneracy": {"degenerate_first": 3, "calls": 10, "degenerate_rate": 0.3,
                                                       "fixed_by_retry": 2, "fallbacks": 1}}
    summaries = pd.DataFrame({"summary": ["This user likes drama.", "This user likes war films a lot."],
                              "flag": ["fallback", ""], "checks": ["", "unchanged"]})
    text = "\n".join(summarizer.reading(report, summaries))
    assert "3 of 10 first attempts (30.0%) were degenerate; the retry fixed 2, and 1 became the template" in text
    assert "For 1 of 2 users the final summary is the template's" in text
    assert "1 of 2 final summaries are a merge that returned one of its inputs" in text and "first block's" not in text
    summaries["user_id"] = ["a", "b"]
    steps = pd.DataFrame({"user_id": ["a", "b", "b", "b"], "level": [0, 0, 0, 1], "index": [0, 0, 1, 0],
                          "summary": ["This user likes drama.", "This user likes war films a lot.", "Other.",
                                      "This user likes war films a lot."]})
    text = "\n".join(summarizer.reading(report, summaries, steps))  # b's merge returned its first block's summary
    assert "Of those 1, 1 is word for word the final merge's oldest input (for them the newest items are the " \
           "ones lost) and 0 its newest (the older items lost)." in text
    assert "first block's summary itself" not in text  # one merge level: the oldest input is the first block
    report["method"] = "recurrent"
    text = "\n".join(summarizer.reading(report, summaries, steps))
    assert "Of those 1, 1 is still word for word the first block's summary: no update after it" in text
    report["method"] = "hierarchical"
    steps.loc[1, "summary"] = "Something else."
    text = "\n".join(summarizer.reading(report, summaries, steps))
    assert "Of those 1, 0 are word for word the final merge's oldest input" in text
    assert "1 match none of the final merge's inputs" in text


def test_reading_names_the_input_a_deeper_merge_copied():
    """Merges of merges (8 blocks, fan-in 5, as on course-long): an unchanged final summary is the final merge's
    oldest or newest input, compared as the check compares (case aside); and some are the first block's summary."""
    report = {"method": "hierarchical", "degeneracy": {"degenerate_first": 0, "calls": 13, "degenerate_rate": 0.0,
                                                       "fixed_by_retry": 0, "fallbacks": 0}}
    rows = []
    for user, (old, new, final) in {"a": ("Likes Drama.", "Likes war.", "likes drama."),  # the oldest, case aside
                                    "b": ("Likes comedy.", "Likes horror.", "Likes horror."),  # the newest
                                    "c": ("Block one.", "Likes crime.", "Block one.")}.items():  # first block too
        rows += [{"user_id": user, "level": 0, "index": 0, "summary": "Block one." if user == "c" else "b0"},
                 {"user_id": user, "level": 0, "index": 1, "summary": "b1"},
                 {"user_id": user, "level": 1, "index": 0, "summary": old},
                 {"user_id": user, "level": 1, "index": 1, "summary": new},
                 {"user_id": user, "level": 2, "index": 0, "summary": final}]
    steps = pd.DataFrame(rows)
    summaries = pd.DataFrame({"user_id": ["a", "b", "c"], "summary": ["likes drama.", "Likes horror.", "Block one."],
                              "flag": ["", "", ""], "checks": ["unchanged"] * 3})
    text = "\n".join(summarizer.reading(report, summaries, steps))
    assert "Of those 3, 2 are word for word the final merge's oldest input (for them the newest items are the ones " \
           "lost) and 1 its newest (the older items lost). 1 is the first block's summary itself" in text
    assert "match none" not in text


def test_only_rank_0_opens_the_call_cache(tmp_path, monkeypatch):
    """SQLite's WAL needs one host and its locks fail on NFS/Lustre/GPFS: under a launcher, rank 0 alone opens the
    database; any other rank gets a stand-in that cannot read or write (the 2-process runs of
    tests/unit/test_distributed.py run every stage with this guard in place)."""
    from trsr_utils.core.config import resolve_config

    cfg = resolve_config("smoke", tmp_path)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    other = summarizer.open_cache(cfg)
    assert isinstance(other, callcache.NotOpened) and not (tmp_path / callcache.CACHE_FILE).exists()
    with pytest.raises(RuntimeError, match="only rank 0"):
        other.get_many(["k"])
    with pytest.raises(RuntimeError, match="rank 1 opened the call cache"):
        CallCache(tmp_path / callcache.CACHE_FILE)
    monkeypatch.setenv("RANK", "0")
    assert isinstance(summarizer.open_cache(cfg), CallCache)


def test_the_call_cache_uses_a_rollback_journal_on_a_network_filesystem(tmp_path, monkeypatch):
    """SQLite's WAL keeps its index in shared memory beside the file, which NFS, Lustre or GPFS cannot give."""
    from trsr_utils.core import io as trsr_io

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path / 'shared'} nfs4 rw 0 0\n")
    assert trsr_io.filesystem_type(tmp_path / "shared" / "run", mounts) == "nfs4"
    assert trsr_io.filesystem_type(tmp_path / "local", mounts) == "ext4"
    assert CallCache(tmp_path / "local.sqlite").journal == "WAL"
    monkeypatch.setattr(trsr_io, "filesystem_type", lambda path, mounts="/proc/mounts": "lustre")
    cache = CallCache(tmp_path / "lustre.sqlite")
    assert cache.journal == "DELETE" and cache.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    cache.put_many([("k", "m", "p", {}, summarizer.Call("t", "eos", 1, 1, 0.1, False))])
    assert list(cache.get_many(["k"])) == ["k"]


def test_examples_show_each_step_under_one_kind_with_its_first_attempt():
    rows = [  # (flag, checks, edits, calls): a retried step whose retry was also flagged belongs to "retried" only
        ("", "", "", 1), ("", "", "trimmed", 1), ("", "unknown_title", "trimmed", 1),
        ("retried", "unknown_title", "", 2), ("fallback", "", "", 2),
    ]
    steps = pd.DataFrame([{"user_id": f"u{i}", "level": 0, "index": 0, "flag": f, "checks": ch, "edits": ed,
                           "calls": n, "first_raw": f"This user first {i}", "raw": f"This user last {i}",
                           "problem": "" if n == 1 else "loop", "retry_problem": "loop" if f == "fallback" else "",
                           "summary": f"s{i}"} for i, (f, ch, ed, n) in enumerate(rows)])
    shown = summarizer.examples(steps, per_kind=5)
    assert sorted(shown["user_id"]) == [f"u{i}" for i in range(5)]  # every step once
    assert dict(zip(shown["user_id"], shown["kind"])) == {
        "u0": "passed the checks", "u1": "trimmed or deduplicated", "u2": "kept but flagged", "u3": "retried",
        "u4": "fallback (template)"}
    by_user = shown.set_index("user_id")
    assert by_user.loc["u3", "first_attempt"] == "This user first 3" and by_user.loc["u3", "problem"] == "loop"
    assert by_user.loc["u3", "retry"] == "This user last 3"
    assert by_user.loc["u0", "retry"] == ""  # one call: nothing retried


def test_an_update_is_unchanged_as_the_check_says():
    """04's uptake and 05's drift count an update unchanged exactly when the 'unchanged' check flags it: the same
    words, case and punctuation aside (two definitions gave 69.9% and 70.1% on course-long-all)."""
    steps = pd.DataFrame({"user_id": ["u"] * 3, "level": [0, 1, 2],
                          "summary": ["This user likes Comedy.", "This user likes comedy!", "This user likes war."]})
    uptake = summarizer.update_uptake(steps)
    assert uptake["unchanged"].tolist() == [True, False]
    assert uptake["unchanged"].tolist() == [summary_checks.unchanged(b, [a]) for a, b in
                                            zip(steps["summary"], steps["summary"][1:])]
