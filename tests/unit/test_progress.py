"""progress.logged: a stage's progress goes to a log file; the notebook gets one line."""

from __future__ import annotations

from trsr_utils.core import progress


def test_logged_sends_progress_to_a_file_with_relative_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRSR_HEADLESS", "1")
    monkeypatch.setenv("TRSR_PROGRESS", "1")
    run = tmp_path / "run"
    with progress.logged(run / "logs" / "07_eval.log", run, "07") as log:
        log(f"training an adapter into {run / '06_sft' / 'abc'}")
        with progress.bar(3, "scoring", "user") as b:
            b.update(3)
        print("20 users scored; results in", run / "07_eval" / "f00")
    shown = capsys.readouterr().out.strip().splitlines()
    assert len(shown) == 1, shown
    assert shown[0].startswith("07: 3 progress lines in logs/07_eval.log (")
    assert shown[0].endswith("the last: 20 users scored; results in 07_eval/f00")
    text = (run / "logs" / "07_eval.log").read_text()
    assert "training an adapter into 06_sft/abc" in text and "scoring: 3 users in" in text
    assert str(tmp_path) not in text


def test_shown_path_is_relative_inside_the_run_only(tmp_path):
    from trsr_utils.core import io

    assert io.shown_path(tmp_path / "run" / "07_eval" / "abc", tmp_path / "run") == "07_eval/abc"
    assert io.shown_path("/elsewhere/x", tmp_path / "run") == "/elsewhere/x"
    assert io.shown_path("/elsewhere/x", None) == "/elsewhere/x"


def test_logged_says_when_nothing_was_logged(tmp_path, capsys):
    with progress.logged(tmp_path / "logs" / "x.log", tmp_path, "09"):
        pass
    assert capsys.readouterr().out.strip().startswith("09: nothing logged (")
