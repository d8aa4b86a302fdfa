"""The stage mechanism: how any stage's result is fingerprinted, stored, found and reported.

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

This module knows no particular stage: each stage declares itself (a :class:`Stage`, in its own module under
:mod:`trsr_utils.stages`) and :func:`register` adds it here, so importing a stage's module is what makes it known.

``python -m trsr_utils status`` prints it per stage; docs/design.md explains the mechanism.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from trsr_utils.core import io
from trsr_utils.core.config import Config
from trsr_utils.core.hashing import canonical, digest, file_digest
from trsr_utils.core.models import model_id, model_identity

RECORD = "stage.json"
DIGEST_CHARS = 12  # folder names: 48 bits is plenty within one run directory


Inputs = dict[str, tuple[str, Config]]  # label -> (stage name, the config it is read under)


@dataclass(frozen=True)
class Stage:
    name: str  # also the run-directory folder
    notebook: str  # the notebook (without .ipynb) that computes it
    reads: tuple["Stage", ...]  # upstream stages it may read (which ones for a given config: ``inputs``)
    depends_on: tuple[str, ...]  # config fields; "section" means every field of that section
    exclude: tuple[str, ...] = ()  # fields of a listed section that do not change the result
    models: tuple[str, ...] = ()  # config fields naming models whose identity and precision are part of it
    tokenizers: tuple[str, ...] = ()  # config fields naming models whose tokenizer only is used (identity only)
    # Parts of the package a course invites you to edit (a prompt's wording, notebook 05's genre aliases), each a
    # function of the config rendering what it produces: that is part of the fingerprint, so an edited prompt gets
    # new results in a new folder instead of overwriting the old ones under the old name. Other code is covered
    # by ``version``.
    code: dict[str, Callable[[Config], Any]] = field(default_factory=dict, compare=False)
    version: int = 1  # bump when the stage's algorithm or output format changes
    # The stages it reads for a given config, where that is not every stage of ``reads`` under the same config
    # (06 reads the summary it is trained with; 07-09 one adapter per fine-tuned row).
    inputs: Callable[[Config], Inputs] | None = field(default=None, compare=False)
    data_files: Callable[[Config], list[Path]] | None = field(default=None, compare=False)  # raw files (01)

    @property
    def number(self) -> str:
        return self.notebook[:2]


# The registered stages, in registration order (each stage module registers its stage on import, after the
# stages it reads): what `python -m trsr_utils status` and the plan go through.
STAGES: dict[str, Stage] = {}
# Every registered stage's editable code parts (name -> renderer): the same part may be listed by several stages.
CODE: dict[str, Callable[[Config], Any]] = {}


def register(stage: Stage) -> Stage:
    """Make ``stage`` known by its name, and its code parts by theirs (its upstream stages first); returns it."""
    for upstream in stage.reads:
        if upstream.name not in STAGES:
            raise ValueError(f"stage {stage.name} reads {upstream.name}, which is not registered: register it first")
    # A module imported again (reloaded in a kernel, or run as a script) registers its stage again: the last wins.
    CODE.update(stage.code)
    STAGES[stage.name] = stage
    return stage


# Settings that change nothing while another setting is off: greedy decoding ignores temperature and top_p.
INACTIVE: dict[str, tuple[str, Any]] = {"summary.temperature": ("summary.do_sample", False),
                                        "summary.top_p": ("summary.do_sample", False)}
# Settings added after results were stored, at the value that does what was done before they existed: left out
# of the fingerprint at that value, so earlier results keep their folders; any other value counts as usual.
ADDED: dict[str, Any] = {"data.mind_sequence": "history+clicks", "eval.upstream_check": True,
                         "eval.ablation_zero_shot": True, "sft.select": "best"}
# The same for settings no stage's fingerprint lists (they act through others), left out of the config digest only.
ADDED_OUTSIDE_FINGERPRINTS: dict[str, Any] = {"eval.protocol": "ours"}


class MissingResult(FileNotFoundError):
    """A stage result that does not exist for these settings, with the notebook that computes it."""


def _name(stage: str | Stage) -> str:
    return stage.name if isinstance(stage, Stage) else stage


def get(name: str | Stage) -> Stage:
    """The registered stage of that name (or the stage itself)."""
    name = _name(name)
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {list(STAGES)} (a stage is known once its module under "
                       "trsr_utils.stages is imported; `from trsr_utils import stages` imports them all)")
    return STAGES[name]


def for_notebook(notebook: str) -> Stage | None:
    """The stage a notebook (``07_evaluation`` or ``07_evaluation.ipynb``) computes."""
    stem = Path(notebook).stem
    return next((s for s in STAGES.values() if s.notebook == stem), None)


# ----------------------------------------------------------------- what a stage reads, for a given config
def inputs(cfg: Config, name: str | Stage) -> Inputs:
    """label -> (stage, the config it is read under) for the stages ``name`` reads with ``cfg``: its own
    ``inputs`` where it declares them, else every stage of ``reads`` under ``cfg``."""
    name = _name(name)
    stage = get(name)
    return stage.inputs(cfg) if stage.inputs else {r.name: (r.name, cfg) for r in stage.reads}


def same_result(cfg: Config, other: Config, name: str) -> bool:
    """Does stage ``name`` have the same result under ``other`` as under ``cfg``?"""
    return fingerprint(other, name).digest == fingerprint(cfg, name).digest


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


@dataclass
class Fingerprint:
    stage: str
    digest: str
    parts: dict[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:DIGEST_CHARS]


def parts(cfg: Config, name: str | Stage) -> dict[str, Any]:
    """What the fingerprint of ``name`` under ``cfg`` is made of (readable; :func:`diff` compares two)."""
    name = _name(name)
    stage = get(name)
    out: dict[str, Any] = {"stage": name, "version": stage.version,
                           "settings": settings(cfg, stage.depends_on, stage.exclude),
                           "models": {f: model_id(settings(cfg, [f])[f], *cfg.model.precision(f.split(".")[1]))
                                      for f in stage.models},
                           "inputs": {label: fingerprint(c, s).digest for label, (s, c) in inputs(cfg, name).items()}}
    if stage.tokenizers:
        out["tokenizers"] = {f: model_identity(settings(cfg, [f])[f]) for f in stage.tokenizers}
    if stage.code:
        out["code"] = {part: digest(render(cfg)) for part, render in stage.code.items()}
    if stage.data_files:
        out["data_files"] = {Path(p).name: file_digest(p) if Path(p).exists() else f"missing: {p}"
                             for p in stage.data_files(cfg)}
    return out


_MEMO: dict[tuple[str, str, tuple], Fingerprint] = {}


def fingerprint(cfg: Config, name: str | Stage) -> Fingerprint:
    """The fingerprint of stage ``name``'s result under ``cfg`` (memoized while the raw files are unchanged)."""
    name = _name(name)
    stamp = tuple(_stat(p) for s in STAGES.values() if s.data_files for p in s.data_files(cfg))
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
def result_dir(cfg: Config, name: str | Stage, create: bool = False) -> Path:
    """``<run_dir>/<stage>/<fingerprint>``: where ``name``'s result under ``cfg`` lives."""
    name = _name(name)
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


def is_complete(cfg: Config, name: str | Stage) -> bool:
    name = _name(name)
    rec = record(result_dir(cfg, name))
    return rec is not None and rec.get("fingerprint") == fingerprint(cfg, name).digest


def finish(cfg: Config, name: str | Stage, seconds: float | None = None, **extra: Any) -> Path:
    """Mark ``name``'s result under ``cfg`` complete (after every output file is written); returns its folder.

    A result written again under the same fingerprint (a notebook run again over its caches) keeps the first
    write's time, seconds and commit under ``first`` and counts the writes: the record of when and how long the
    result took to make is never overwritten by a pass that re-used it.
    """
    name = _name(name)

    fp = fingerprint(cfg, name)
    folder = result_dir(cfg, name, create=True)
    now = {"created": time.time(), "seconds": seconds, "git": io.git_state()}
    earlier = record(folder)
    if earlier is not None and earlier.get("fingerprint") == fp.digest:
        first = earlier.get("first") or {k: earlier.get(k) for k in now}
        now.update(first=first, writes=int(earlier.get("writes", 1)) + 1)
    io.write_json(folder / RECORD, {"stage": name, "fingerprint": fp.digest, **now, "parts": fp.parts, **extra})
    return folder


def command(cfg: Config, name: str | Stage) -> str:
    name = _name(name)
    stage = get(name)
    return f"python -m trsr_utils run --profile {cfg.profile} --out {cfg.run_dir} --only {stage.number}"


def require(cfg: Config, name: str | Stage) -> Path:
    """The folder of ``name``'s complete result under ``cfg``, or :class:`MissingResult` saying what to run."""
    name = _name(name)
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


def closest(cfg: Config, name: str | Stage) -> dict[str, Any] | None:
    """The complete result of stage ``name`` in the run directory whose settings differ least from ``cfg``'s
    (the most recent among equals): what a changed setting is reported against."""
    name = _name(name)
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


# ----------------------------------------------------------------- status (what `python -m trsr_utils status` prints)
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
                own = same_result(cfg, c, s)
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
