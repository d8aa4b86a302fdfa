"""The stage registry and the fingerprint of every stored result.

A *stage* is one step of the chain with one folder in the run directory: its
notebook, the stages it reads and the configuration fields its result
depends on. Every result is stored under its *fingerprint*::

    <run_dir>/<stage>/<fingerprint[:12]>/...   + stage.json (written last)

    fingerprint(stage, cfg) = sha256(canonical JSON of
        the stage's version and the values of the fields it depends on,
        the fingerprints of the stages it reads (under the settings it reads them with),
        the identity of each model it uses (name + the precision it runs in; a local folder by its files'
        digests; only the name where a stage uses just the tokenizer),
        the SHA-256 of the raw data files (stage 01 only))

A reader re-uses a result only when a complete folder with exactly that
fingerprint exists; anything else is computed into its own folder, so
switching a setting back finds the earlier result again and nothing
computed is thrown away. ``stage.json`` is written after everything else:
a stage killed half way leaves a folder without it, which no reader accepts
(and which the stage itself resumes, where it can: SFT checkpoints, the LLM
call cache). This is the idea of ``make -n``, ``dvc status`` or Snakemake's
rerun triggers, in a few dozen lines.

Fields that do not change a result are left out on purpose: batch sizes
(``summary.batch_size``, ``sft.score_batch_users``: the same numbers up to
float rounding; the LLM call cache ignores them too), ``sft.logging_steps`` and
``sft.validate_zero_shot`` (what the report logs, not the adapter), and the
run's name and folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import io
from .config import LLM_ROWS, Config, with_overrides

RECORD = "stage.json"
DIGEST_CHARS = 12  # folder names: 48 bits is plenty within one run directory


@dataclass(frozen=True)
class Stage:
    name: str  # also the run-directory folder
    notebook: str  # the notebook (without .ipynb) that computes it
    reads: tuple[str, ...]  # upstream stages it may read (which ones for a given config: :func:`inputs`)
    depends_on: tuple[str, ...]  # config fields; "section" means every field of that section
    exclude: tuple[str, ...] = ()  # fields of a listed section that do not change the result
    models: tuple[str, ...] = ()  # config fields naming models whose identity and precision are part of it
    tokenizers: tuple[str, ...] = ()  # config fields naming models whose tokenizer only is used (identity only)
    code: tuple[str, ...] = ()  # editable parts of the package (:data:`CODE`) whose content is part of it
    version: int = 1  # bump when the stage's algorithm or output format changes

    @property
    def number(self) -> str:
        return self.notebook[:2]


# A model's precision (model.dtype / quantization, or the summarizer's own) is part of its entry under "models";
# the device is a setting of every stage that runs an LLM.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("01_data", "01_data_filtering", (), ("seed", "data")),
    Stage("02_text", "02_chunking_and_prompts", ("01_data",), ("text", "chunking"), tokenizers=("model.summarizer",)),
    Stage("03_hierarchical", "03_hierarchical_summary", ("01_data", "02_text"),
          ("summary", "prompt.domain", "model.device"), exclude=("summary.batch_size",),
          models=("model.summarizer",), code=("block prompt", "merge prompt"),
          version=6),  # 2: summary checks; 3: unquoted invented names flagged; 4: BOS where the tokenizer adds one;
    # 5: a closing quote after a sentence's end kept (was flagged unclosed); each step keeps its first attempt;
    # 6: a sentence trailing off in "..." or split at an initialism ("G.I.J.J. and") is unfinished
    Stage("04_recurrent", "04_recurrent_summary", ("01_data", "02_text"),
          ("summary", "prompt.domain", "model.device"), exclude=("summary.batch_size", "summary.merge_fan_in"),
          models=("model.summarizer",), code=("block prompt", "update prompt"), version=6),  # 5, 6: as 03's
    Stage("05_compare", "05_compare_summaries", ("01_data", "02_text", "03_hierarchical", "04_recurrent"),
          ("seed", "prompt.domain", "prompt.recent_items", "text"), code=("mention aliases",),
          version=2),  # 2: the summary audit (faithfulness, coverage, specificity, drift, predictiveness)
    Stage("06_sft", "06_lora_sft", ("01_data", "03_hierarchical", "04_recurrent"),
          ("seed", "sft", "prompt", "text", "model.device", "model.scoring_dtype"),
          exclude=("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot"),
          models=("model.recommender",), code=("recommendation prompt",),
          version=2),  # 2: BOS where the tokenizer adds one; validation by the float64 p(yes)
    Stage("07_eval", "07_evaluation", ("01_data", "03_hierarchical", "04_recurrent", "06_sft"),
          ("seed", "eval", "prompt", "text", "model.device", "model.scoring_dtype"),
          exclude=("eval.ablation_recent_items", "eval.ablation_items_per_block", "eval.ablation_summarizers",
                   "eval.ablation_finetuned", "eval.reliance_controls", "eval.positive_controls", "eval.order_test",
                   "eval.equivalence_margin", "eval.protocol"),  # the protocol acts through the data/text/sft fields
          models=("model.recommender",), code=("recommendation prompt",),
          version=3),  # 2: BOS where the tokenizer adds one; the float64 p(yes); 3: the upstream negatives beside
    Stage("08_ablations", "08_ablations", ("01_data", "02_text", "03_hierarchical", "04_recurrent", "06_sft"),
          ("seed", "eval.test_users", "eval.ablation_recent_items", "eval.ablation_items_per_block",
           "eval.ablation_summarizers", "eval.ablation_finetuned", "eval.reliance_controls", "eval.positive_controls",
           "eval.order_test", "eval.equivalence_margin", "prompt", "text", "chunking", "summary",
           "sft.summary", "model.device", "model.scoring_dtype"),
          exclude=("summary.batch_size",), models=("model.recommender", "model.summarizer"),
          code=("block prompt", "merge prompt", "update prompt", "recommendation prompt"),
          version=3),  # 2: BOS where the tokenizer adds one; the float64 p(yes); 3: the controls of section 4
    # Listwise vs pointwise on 07's test users (07's pointwise scores re-used from the score store), position
    # bias, the summary retriever and two-stage ranking over the whole catalogue (SASRec retrains here).
    Stage("09_beyond", "09_beyond_pointwise", ("01_data", "03_hierarchical", "04_recurrent", "06_sft"),
          ("seed", "beyond", "eval.test_users", "eval.bootstrap", "eval.recbole_epochs",
           "eval.recbole_embedding_size", "eval.recbole_max_seq_length", "eval.recbole_learning_rate", "sft",
           "prompt", "text", "model.device", "model.scoring_dtype"),
          exclude=("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot"),
          models=("model.recommender",), code=("recommendation prompt", "listwise prompt")),
)}
# The stage whose result a summary method's texts come from: the template is made from notebook 02's blocks, the
# oracle (notebook 08's positive control) from notebook 01's held-out positives.
SUMMARY_STAGE = {"hierarchical": "03_hierarchical", "recurrent": "04_recurrent", "template": "02_text",
                 "oracle": "01_data"}


def _prompt(kind: str) -> Any:
    """The prompt of ``kind`` with placeholders for its data, as the LLM would be given it (before the chat
    template): what a change of its wording changes."""
    def render(cfg: Config) -> Any:
        from . import prompts, text

        d, one, two = text.domain_of(cfg), ["<item>"], ["<item 1>", "<item 2>"]
        made = {"block": lambda: [prompts.block_summary_messages(lines, d) for lines in (one, two)],
                "merge": lambda: prompts.merge_messages(["<summary 1>", "<summary 2>"], d),
                "update": lambda: [prompts.recurrent_messages("<summary>", lines, d) for lines in (one, two)],
                "recommendation": lambda: [prompts.recommendation_messages("<summary>", two, d),
                                           prompts.recommendation_messages(None, [], d)],
                "listwise": lambda: [prompts.listwise_messages("<summary>", two, two, d),
                                     prompts.listwise_messages(None, [], one, d)]}[kind]()
        return {"messages": made, "opening": prompts.SUMMARY_OPENING if kind != "recommendation" else ""}
    return render


def _mention_aliases(cfg: Config) -> Any:
    from . import compare

    return compare.MENTION_ALIASES


# Parts of the package a course invites you to edit (a prompt's wording, the genre aliases of notebook 05): what
# they produce is part of the fingerprint of the stages that use them, so an edited prompt gets new results in a
# new folder instead of overwriting the old ones under the old name. Other code is covered by Stage.version.
CODE: dict[str, Any] = {**{f"{kind} prompt": _prompt(kind)
                           for kind in ("block", "merge", "update", "recommendation", "listwise")},
                        "mention aliases": _mention_aliases}
# Settings that change nothing while another setting is off: greedy decoding ignores temperature and top_p.
INACTIVE: dict[str, tuple[str, Any]] = {"summary.temperature": ("summary.do_sample", False),
                                        "summary.top_p": ("summary.do_sample", False)}
# Settings added after results were stored, at the value that does what was done before they existed: left out
# of the fingerprint at that value, so earlier results keep their folders; any other value counts as usual.
ADDED: dict[str, Any] = {"data.mind_sequence": "history+clicks"}
# The same for settings no stage's fingerprint lists (they act through others), left out of the config digest only.
ADDED_OUTSIDE_FINGERPRINTS: dict[str, Any] = {"eval.protocol": "ours"}


class MissingResult(FileNotFoundError):
    """A stage result that does not exist for these settings, with the notebook that computes it."""


def get(name: str) -> Stage:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {list(STAGES)}")
    return STAGES[name]


def for_notebook(notebook: str) -> Stage | None:
    """The stage a notebook (``07_evaluation`` or ``07_evaluation.ipynb``) computes."""
    stem = Path(notebook).stem
    return next((s for s in STAGES.values() if s.notebook == stem), None)


# ----------------------------------------------------------------- what a stage reads, for a given config
def inputs(cfg: Config, name: str) -> dict[str, tuple[str, Config]]:
    """label -> (stage, the config it is read under) for the stages ``name`` reads with ``cfg``.

    Most stages read their upstream under the same config; 06 reads the summary of ``sft.summary``; 07 reads
    an adapter per fine-tuned row (06 under that row's summary) and 08 one per grid cell.
    """
    stage = get(name)
    if name == "06_sft":
        out = {"01_data": ("01_data", cfg)}
        if cfg.sft.summary != "none":
            out[SUMMARY_STAGE[cfg.sft.summary]] = (SUMMARY_STAGE[cfg.sft.summary], cfg)
        return out
    if name == "07_eval":
        out = {"01_data": ("01_data", cfg)}
        for system in cfg.eval.llm:
            out.update(_llm_inputs(cfg, cfg, LLM_ROWS[system], system != "zero_shot"))
        return out
    if name == "08_ablations":
        from .ablation import grid

        out = {"01_data": ("01_data", cfg)}
        for cell in grid(cfg):
            cell_cfg = with_overrides(cfg, cell.overrides)
            for label, (s, c) in _llm_inputs(cfg, cell_cfg, cell.method, cell.finetuned).items():
                own = s == "06_sft" or _same_result(cfg, c, s)
                out[label if own else f"{label}[{cell.name}]"] = (s, c)
        return out
    if name == "09_beyond":  # the main summary, notebook 06's adapter for it
        from .user_prompts import main_summary

        return {"01_data": ("01_data", cfg), **_llm_inputs(cfg, cfg, main_summary(cfg), True)}
    return {r: (r, cfg) for r in stage.reads}


def _llm_inputs(cfg: Config, prompt_cfg: Config, method: str, finetuned: bool) -> dict[str, tuple[str, Config]]:
    out = {}
    if method != "none":
        out[SUMMARY_STAGE[method]] = (SUMMARY_STAGE[method], prompt_cfg)
    if finetuned:
        out[f"06_sft[{method}]"] = ("06_sft", adapter_config(cfg, method))
    return out


def _same_result(cfg: Config, other: Config, name: str) -> bool:
    """Does stage ``name`` have the same result under ``other`` as under ``cfg``?"""
    return fingerprint(other, name).digest == fingerprint(cfg, name).digest


def adapter_config(cfg: Config, method: str, seed: int = 0) -> Config:
    """The settings of the adapter fine-tuned with summary ``method`` and the ``seed``-th SFT seed
    (``eval.sft_seeds``; everything else as in ``cfg``)."""
    overrides: dict[str, Any] = {}
    if cfg.sft.summary != method:
        overrides["sft.summary"] = method
    if seed:
        overrides["sft.seed_offset"] = cfg.sft.seed_offset + seed
    return with_overrides(cfg, overrides, control=method == "oracle") if overrides else cfg


# ----------------------------------------------------------------- fingerprints
def settings(cfg: Config, fields: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """{"section.field": value} for the named fields (a bare section name expands to all its fields)."""
    raw, skip, out = cfg.to_dict(), set(exclude), {}
    for name in fields:
        section, _, field = name.partition(".")
        if field:
            keys = [name]
        elif isinstance(raw[section], dict):
            keys = [f"{section}.{f}" for f in raw[section]]
        else:
            keys = [section]
        for key in keys:
            if key not in skip:
                sec, _, f = key.partition(".")
                out[key] = raw[sec][f] if f else raw[sec]
    for key, (switch, off) in INACTIVE.items():
        sec, _, f = switch.partition(".")
        if key in out and raw[sec][f] == off:
            del out[key]
    for key, before in ADDED.items():
        if key in out and out[key] == before:
            del out[key]
    return out


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (memoized per path, size and modification time within the process)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]


@dataclass
class Fingerprint:
    stage: str
    digest: str
    parts: dict[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:DIGEST_CHARS]


def parts(cfg: Config, name: str) -> dict[str, Any]:
    """What the fingerprint of ``name`` under ``cfg`` is made of (readable; :func:`diff` compares two)."""
    from . import llm

    stage = get(name)
    out: dict[str, Any] = {"stage": name, "version": stage.version,
                           "settings": settings(cfg, stage.depends_on, stage.exclude),
                           "models": {f: llm.model_id(settings(cfg, [f])[f], *cfg.model.precision(f.split(".")[1]))
                                      for f in stage.models},
                           "inputs": {label: fingerprint(c, s).digest for label, (s, c) in inputs(cfg, name).items()}}
    if stage.tokenizers:
        out["tokenizers"] = {f: llm.model_identity(settings(cfg, [f])[f]) for f in stage.tokenizers}
    if stage.code:
        out["code"] = {part: digest(CODE[part](cfg)) for part in stage.code}
    if name == "01_data":
        from .data.prepare import raw_files

        out["data_files"] = {Path(p).name: file_digest(p) if Path(p).exists() else f"missing: {p}"
                             for p in raw_files(cfg)}
    return out


_MEMO: dict[tuple[str, str, tuple], Fingerprint] = {}


def fingerprint(cfg: Config, name: str) -> Fingerprint:
    """The fingerprint of stage ``name``'s result under ``cfg`` (memoized while the raw files are unchanged)."""
    from .data.prepare import raw_files

    stamp = tuple(_stat(p) for p in raw_files(cfg))
    # The code parts are cheap to render and may change in a live kernel (an edited, re-imported prompt).
    key = (name, canonical(cfg.to_dict()), stamp, digest({part: CODE[part](cfg) for part in CODE}))
    if key not in _MEMO:
        if len(_MEMO) > 4096:
            _MEMO.clear()
        p = parts(cfg, name)
        _MEMO[key] = Fingerprint(name, digest(p), p)
    return _MEMO[key]


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = Path(path).stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_size, st.st_mtime_ns)


def config_digest(cfg: Config) -> str:
    """One configuration, whatever the run folder it runs in (variant folders are named by it)."""
    d = cfg.to_dict()
    for key in ("run_dir", "profile", "description"):
        d.pop(key, None)
    for key, before in {**ADDED, **ADDED_OUTSIDE_FINGERPRINTS}.items():  # as before the setting existed
        section, _, name = key.partition(".")
        if d[section].get(name) == before:
            del d[section][name]
    return digest(d)[:DIGEST_CHARS]


def home(cfg: Config, overrides: Any = None) -> Path:
    """Where a run's manifest, executed notebooks and recorded results go: the run directory for the profile's
    own settings, ``variants/<config digest>/`` inside it for a run with overrides (an exploratory change
    never rewrites the run directory's top-level tables)."""
    root = Path(cfg.run_dir)
    return root if not overrides else root / "variants" / config_digest(cfg)


def record_results(cfg: Any, notebook: str, results: dict[str, Any], overrides: Any = None) -> dict[str, Any]:
    """Save a notebook's key results and show where they went.

    The results go to ``results/<notebook>.json`` in the run directory (with ``overrides``: in the variant's
    folder, see :func:`home`) and into the cell's output under a dedicated MIME type, so
    tests can read them back either from the run directory or from the executed notebook itself.
    """
    clean = json.loads(json.dumps(results, default=io.json_default))
    path = io.write_json(home(cfg, overrides) / "results" / f"{notebook}.json", clean)
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            shown = io.shown_path(path, getattr(cfg, "run_dir", None))
            display({io.RESULTS_MIME: clean, "text/plain": f"{len(clean)} key results saved to {shown}"}, raw=True)
    except ImportError:  # pragma: no cover - IPython is a dependency
        pass
    return clean


# ----------------------------------------------------------------- result folders
def result_dir(cfg: Config, name: str, create: bool = False) -> Path:
    """``<run_dir>/<stage>/<fingerprint>``: where ``name``'s result under ``cfg`` lives."""
    path = Path(cfg.run_dir) / name / fingerprint(cfg, name).short
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def record(folder: Path) -> dict[str, Any] | None:
    """The completion record of a result folder (None: absent or unfinished)."""
    path = Path(folder) / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_complete(cfg: Config, name: str) -> bool:
    rec = record(result_dir(cfg, name))
    return rec is not None and rec.get("fingerprint") == fingerprint(cfg, name).digest


def finish(cfg: Config, name: str, seconds: float | None = None, **extra: Any) -> Path:
    """Mark ``name``'s result under ``cfg`` complete (after every output file is written); returns its folder."""

    fp = fingerprint(cfg, name)
    folder = result_dir(cfg, name, create=True)
    io.write_json(folder / RECORD, {"stage": name, "fingerprint": fp.digest, "created": time.time(),
                                    "seconds": seconds, "git": io.git_state(), "parts": fp.parts, **extra})
    return folder


def command(cfg: Config, name: str) -> str:
    stage = get(name)
    return f"python -m trsr_utils.pipeline run --profile {cfg.profile} --out {cfg.run_dir} --only {stage.number}"


def require(cfg: Config, name: str) -> Path:
    """The folder of ``name``'s complete result under ``cfg``, or :class:`MissingResult` saying what to run."""
    folder = result_dir(cfg, name)
    if is_complete(cfg, name):
        return folder
    stage = get(name)
    msg = (f"no {name} result for these settings in {cfg.run_dir} (expected {folder}): run notebook "
           f"{stage.notebook} first ({command(cfg, name)}, with the same overrides as --set KEY=VALUE)")
    other = closest(cfg, name)
    if folder.exists():
        msg += f". {folder} is unfinished (a run was interrupted): running the notebook again resumes it"
    elif other is not None:
        changes = diff(other["parts"], fingerprint(cfg, name).parts)
        msg += f". The results there were made with other settings: {'; '.join(changes[:4])}"
    raise MissingResult(msg)


def closest(cfg: Config, name: str) -> dict[str, Any] | None:
    """The complete result of stage ``name`` in the run directory whose settings differ least from ``cfg``'s
    (the most recent among equals): what a changed setting is reported against."""
    root = Path(cfg.run_dir) / name
    found = [r for r in (record(p) for p in root.iterdir() if p.is_dir()) if r] if root.exists() else []
    if not found:
        return None
    new = fingerprint(cfg, name).parts
    return min(found, key=lambda r: (len(diff(r.get("parts", {}), new)), -r.get("created", 0)))


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints' parts, as "field: old -> new" lines."""
    out = []
    if old.get("version") != new.get("version"):
        out.append(f"stage version: {old.get('version')} -> {new.get('version')}")
    for group in ("settings", "models", "data_files"):
        a, b = old.get(group, {}), new.get(group, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key, "(none)") != b.get(key, "(none)"):
                out.append(f"{key}: {_short(a.get(key, '(none)'))} -> {_short(b.get(key, '(none)'))}")
    a, b = old.get("inputs", {}), new.get("inputs", {})
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(f"new input {key}")
        elif key not in b:
            out.append(f"input {key} no longer read")
        elif a[key] != b[key]:
            out.append(f"input {key} changed")
    a, b = old.get("code", {}), new.get("code", {})
    out += [f"{key} (code) changed" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    return out


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:  # a SHA-256: the prefix that names its folder
        return value[:DIGEST_CHARS]
    return canonical(value)


# ----------------------------------------------------------------- status (what `pipeline status` prints)
@dataclass
class StageStatus:
    stage: str
    notebook: str
    state: str  # "up to date" | "would recompute" | "missing"
    folder: str
    reasons: list[str] = dataclasses.field(default_factory=list)


def status(cfg: Config, names: Iterable[str] | None = None) -> list[StageStatus]:
    """Per stage: up to date (a complete result with this fingerprint exists), or why it would be computed."""
    out = []
    for name in names or STAGES:
        stage, fp = get(name), fingerprint(cfg, name)
        folder = result_dir(cfg, name)
        if is_complete(cfg, name):
            out.append(StageStatus(name, stage.notebook, "up to date", str(folder)))
            continue
        other, read = closest(cfg, name), inputs(cfg, name)
        if folder.exists():
            reasons = ["an unfinished result with these settings (a run was interrupted): resumes"]
        elif other is None:
            reasons = ["no result yet"]
        else:
            reasons = [_explained(line, cfg, read, other) for line in diff(other["parts"], fp.parts)] or [
                "other settings"]
        # Inputs under the stage's own settings come from their notebooks; the others (07's extra adapters,
        # 08's per-cell summaries) are computed by this stage itself.
        needs, computes = [], []
        for label, (s, c) in read.items():
            if not is_complete(c, s):
                own = _same_result(cfg, c, s)
                (needs if own else computes).append(get(s).number if own else label)
        if needs:
            reasons.append(f"needs notebooks {', '.join(sorted(set(needs)))} first")
        if computes:
            reasons.append(f"will also compute {', '.join(computes)}")
        out.append(StageStatus(name, stage.notebook, "missing" if other is None else "would recompute",
                               str(folder), reasons))
    return out


def _explained(line: str, cfg: Config, read: dict[str, tuple[str, Config]], other: dict[str, Any]) -> str:
    """ "input X changed", with what changed in X: its settings now (``read``: the stage's inputs) against those
    of the X result that ``other`` (the stored result compared with) was made from."""
    label = line.removeprefix("input ").removesuffix(" changed")
    this = read.get(label) if line.startswith("input ") and line.endswith(" changed") else None
    old = other["parts"].get("inputs", {}).get(label)
    if this is None or old is None:
        return line
    stage, c = this
    before = record(Path(cfg.run_dir) / stage / old[:DIGEST_CHARS])
    why = diff(before["parts"], fingerprint(c, stage).parts) if before else []
    return f"{line} ({why[0]}{', ...' if len(why) > 1 else ''})" if why else line


def format_status(rows: list[StageStatus]) -> str:
    lines = []
    for r in rows:
        lines.append(f"{r.stage:<16} {r.state:<16} {r.folder}")
        lines += [f"{'':<16}   {reason}" for reason in r.reasons]
    return "\n".join(lines)
