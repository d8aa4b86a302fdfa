"""The score store: every system's scores for the test users, one Parquet file per key (the settings, data,
models, summaries and adapters that made them) in ``<run>/cache/scores/``, the key beside it as JSON. A stored
frame is re-used only when its key and its users and candidates match; otherwise it is computed again. Notebook
07 fills it; 08 and 09 re-use 07's rows from it instead of scoring again.

Notebook 07 teaches it; 08 and 09 re-use its rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines
from trsr_utils.store import stages
from trsr_utils.core import distributed, io
from trsr_utils.core.models import model_id
from trsr_utils.method import metrics

SCORES_DIR = Path("cache") / "scores"
SCORE_VERSION = 2  # 2: p(yes) is the float64 sigmoid of the yes-no gap (confident candidates no longer tie)


def samples_key(cfg: Any) -> dict[str, Any]:
    """What fixes the test users and their candidates: the data stage's result and ``eval.test_users``."""
    return {"01_data": stages.fingerprint(cfg, "01_data").digest, "test_users": cfg.eval.test_users}


def llm_key(cfg: Any, method: str, summary_id: str | None, adapter_id: dict[str, str] | None) -> dict[str, Any]:
    """Everything an LLM row's scores depend on: users, prompt, recommender, summary and adapter."""
    m = cfg.model
    return {"system": "llm", "version": SCORE_VERSION, "samples": samples_key(cfg), "method": method,
            "settings": stages.settings(cfg, ["prompt", "text", "model.device", "model.scoring_dtype"]),
            "recommender": model_id(m.recommender, m.dtype, m.quantization),
            # an edited recommendation prompt is a new score (a fine-tuned row's adapter key has it too; zero-shot's
            # had nothing else to show it)
            "code": stages.digest(stages.CODE["recommendation prompt"](cfg)),
            "summary": summary_id, "adapter": adapter_id}


def scores_path(cfg: Any, key: dict[str, Any]) -> Path:
    return Path(cfg.run_dir) / SCORES_DIR / f"{stages.digest(key)[:stages.DIGEST_CHARS]}.parquet"


def score_frame(samples: pd.DataFrame, scores: Sequence[np.ndarray], seconds: float) -> pd.DataFrame:
    cands = baselines.candidates(samples)
    for s, c, u in zip(scores, cands, samples["user_id"]):
        if len(s) != len(c):
            raise ValueError(f"user {u}: {len(s)} scores for {len(c)} candidates")
    return pd.DataFrame({"user_id": samples["user_id"], "candidates": cands,
                         "scores": [np.asarray(s, dtype=float).tolist() for s in scores],
                         "rank": [metrics.positive_rank(s) for s in scores], "seconds": seconds})


def stored_frame(path: Path, matches: Callable[[pd.DataFrame], bool], compute: Callable[[], pd.DataFrame],
                 log: Callable[[str], None] = print, key: dict[str, Any] | None = None,
                 stale: str = "stored for other users or items; computing again") -> pd.DataFrame:
    """The frame at ``path`` (named by its key) when ``matches`` it; else ``compute()``'s, saved with the key beside
    it (``.json``) to say what made it. Under a launcher every process holds the frame and rank 0 stores it."""
    if path.exists():
        frame = io.read_parquet(path)
        if matches(frame):
            return frame
        log(f"{path.name}: {stale}")
    frame = compute()
    if distributed.is_main():
        if key is not None:
            io.write_json(path.with_suffix(".json"), key)
        io.write_parquet(path, frame)
    distributed.barrier()
    return frame


def cached(path: Path, samples: pd.DataFrame, compute: Callable[[], Sequence[np.ndarray]],
           log: Callable[[str], None] = print, key: dict[str, Any] | None = None) -> pd.DataFrame:
    """Scores from ``path`` when they are for exactly these users and candidates; else computed, timed and saved
    (:func:`stored_frame`)."""
    def same(frame: pd.DataFrame) -> bool:
        return (list(frame["user_id"]) == list(samples["user_id"])
                and [list(c) for c in frame["candidates"]] == baselines.candidates(samples))

    def scored() -> pd.DataFrame:
        began = time.perf_counter()
        scores = compute()
        return score_frame(samples, scores, round(time.perf_counter() - began, 2))

    return stored_frame(path, same, scored, log, key, "stored scores are for other users or candidates; scoring again")
