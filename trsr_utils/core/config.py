"""Run profiles (YAML) resolved into one typed configuration (:class:`Config`).

The defaults live in :mod:`trsr_utils.core.schema` and only there. A profile file overrides them, a profile may
``extends:`` another one, and a notebook or the command line may override single
values with dotted keys (``{"data.n_train": 20}``). Any key that is not a field
of the configuration is an error that names the key and suggests the nearest
valid one: a typo must never silently fall back to a default.

Every notebook starts with :func:`resolve_config`; notebook 01 shows a profile and its overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

# Config and ConfigError are what callers import from here.
from trsr_utils.core.schema import (BASELINES, ID_BASELINES, LLM_ROWS, POSITIVE_CONTROLS,  # noqa: F401
                                    RELIANCE_CONTROLS, Config, ConfigError)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "profiles"


_CHOICES: dict[str, tuple[Any, ...]] = {
    "data.dataset": ("movielens-100k", "mind", "amazon-m2"),
    "data.long_history": ("drop", "keep_recent"),
    "data.negative_source": ("uniform", "impressions", "upstream"),
    "data.mind_sequence": ("history+clicks", "history"),
    "eval.protocol": ("ours", "upstream"),
    "data.on_error": ("raise", "skip"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.quantization": (None, "8bit", "4bit"),
    "model.scoring_dtype": (None, "float32", "bfloat16", "float16"),
    "model.summarizer_dtype": (None, "float32", "bfloat16", "float16"),
    "model.summarizer_quantization": (None, "8bit", "4bit"),
    "model.device": ("auto", "cpu", "cuda"),
    "prompt.domain": (None, "news", "products", "movies"),
    # template: the no-LLM summary of notebook 05; oracle: notebook 08's leaking positive control only (refused
    # in a profile or --set, see _validate)
    "sft.summary": ("hierarchical", "recurrent", "none", "template", "oracle"),
    "sft.loss": ("answer", "yes_no", "whole"),
    "sft.select": ("best", "last"),
    "sft.mixed_precision": (None, "bfloat16"),
    "beyond.rerank_order": ("retriever", "shuffled"),
}


# eval.protocol: upstream is these settings, read from the official code (zhengzhi-1997/LLM-TRSR): 20 negatives
# per user drawn with pandas' ``sample`` from every catalogue item (history and positive not excluded), the first
# of them the training negative (1:1 in training, 1:20 in evaluation); MIND from
# each user's first behaviors row, the positive the history's last news; item text id, category, subcategory and
# title (no abstract); SFTTrainer on the whole text (prompt and answer), which cannot share a prefix.
UPSTREAM: dict[str, Any] = {"data.negative_source": "upstream", "data.train_negatives": 1, "data.eval_negatives": 20,
                            "text.include_abstract": False, "sft.loss": "whole", "sft.shared_prefix": False}
UPSTREAM_MIND: dict[str, Any] = {"data.mind_sequence": "history"}


def _upstream_settings(dataset: str | None) -> dict[str, Any]:
    """The settings ``eval.protocol: upstream`` implies for ``dataset``."""
    return {**UPSTREAM, **(UPSTREAM_MIND if dataset == "mind" else {})}


def _with_protocol(raw: dict[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with the settings ``eval.protocol`` implies. They replace a profile's values; a value given
    explicitly (``explicit``: overrides, dotted or nested) that contradicts them is an error, never overwritten."""
    given = _expand_dotted(explicit)
    data = raw.get("data") or {}
    if (raw.get("eval") or {}).get("protocol") != "upstream":
        if data.get("negative_source") == "upstream" and (given.get("eval") or {}).get("protocol") == "ours":
            # an upstream configuration given protocol: ours would keep every upstream setting under the name "ours"
            raise ConfigError("eval.protocol: ours on a configuration made with eval.protocol: upstream keeps its "
                              "upstream settings: resolve the profile again without it instead")
        return raw
    if data.get("dataset") != "mind" and "mind_sequence" not in (given.get("data") or {}):
        raw = _deep_merge(raw, {"data": {"mind_sequence": "history+clicks"}})  # e.g. upstream MIND -> MovieLens
    implied = _upstream_settings(data.get("dataset"))
    for key, value in implied.items():
        section, name = key.split(".")
        if name in (given.get(section) or {}) and given[section][name] != value:
            raise ConfigError(f"eval.protocol: upstream sets {key} to {value!r}; the override asks for "
                              f"{given[section][name]!r} (drop one of the two)")
    return _deep_merge(raw, _expand_dotted(implied))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _profile_path(profile: str) -> Path:
    candidate = Path(profile)
    if candidate.suffix in {".yaml", ".yml"} and candidate.exists():
        return candidate
    path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(
            f"unknown profile {profile!r}; available: {', '.join(available_profiles())} "
            f"(or pass the path of a .yaml file)"
        )
    return path


def load_profile(profile: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw dictionary of a profile, with ``extends:`` chains merged."""
    path = _profile_path(profile)
    if str(path) in _seen:
        raise ConfigError(f"profile {path}: 'extends' forms a cycle")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {path}: expected a mapping at the top level")
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    base = load_profile(base_name, _seen + (str(path),))
    return _deep_merge(base, raw)


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"data.n_train": 5} -> {"data": {"n_train": 5}}; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        if isinstance(value, Mapping):
            node[parts[-1]] = _deep_merge(node.get(parts[-1], {}), _expand_dotted(value))
        else:
            node[parts[-1]] = value
    return out


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, list(fields), n=1)
        where = f"{prefix}{key}"
        msg = f"unknown configuration key {where!r}"
        if hint:
            msg += f"; did you mean '{prefix}{hint[0]}'?"
        else:
            msg += f"; valid keys here: {', '.join(sorted(fields))}"
        raise ConfigError(msg)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name} must be a mapping, got {value!r}")
            kwargs[name] = _build(type(default), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(f"{prefix}{name}", default, value)
    return cls(**kwargs)


def _check_type(key: str, default: Any, value: Any) -> Any:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key} must be one of {list(_CHOICES[key])}, got {value!r}")
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _validate(cfg: Config, control: bool = False) -> None:
    if cfg.sft.summary == "oracle" and not control:
        raise ConfigError("sft.summary: oracle names the held-out positive's attributes (it leaks the answer); it "
                          "exists only as notebook 08's positive-control cell (eval.positive_controls), never as a "
                          "profile's or a command line's setting")
    e = cfg.eval
    for name, allowed in (("reliance_controls", RELIANCE_CONTROLS), ("positive_controls", POSITIVE_CONTROLS)):
        unknown = [c for c in getattr(e, name) if c not in allowed]
        if unknown:
            raise ConfigError(f"eval.{name}: unknown {unknown}; known: {', '.join(allowed)}")
    if not 0 < e.equivalence_margin < 1:
        raise ConfigError(f"eval.equivalence_margin must lie in (0, 1), got {e.equivalence_margin}")
    d = cfg.data
    if not 1 <= d.min_interactions <= d.max_interactions:
        raise ConfigError(
            f"data.min_interactions ({d.min_interactions}) must be >= 1 and <= "
            f"data.max_interactions ({d.max_interactions})"
        )
    if d.min_interactions < 2:
        raise ConfigError("data.min_interactions must be at least 2 (a history and a positive)")
    for name in ("n_train", "n_valid", "n_test", "train_negatives", "eval_negatives"):
        if getattr(d, name) < 0:
            raise ConfigError(f"data.{name} must not be negative")
    if d.negative_source == "impressions" and d.dataset != "mind":
        raise ConfigError("data.negative_source 'impressions' exists only for dataset 'mind'")
    if d.mind_sequence != "history+clicks" and d.dataset != "mind":
        raise ConfigError("data.mind_sequence exists only for dataset 'mind'")
    if d.negative_source == "impressions" and d.mind_sequence == "history":
        raise ConfigError("data.negative_source 'impressions' needs the impression clicks (data.mind_sequence: "
                          "history+clicks): with the history alone no impression holds the positive")
    if cfg.eval.protocol == "upstream":
        raw = cfg.to_dict()
        wrong = {k: v for k, v in _upstream_settings(d.dataset).items() if raw[k.split(".")[0]][k.split(".")[1]] != v}
        if wrong:
            raise ConfigError(f"eval.protocol: upstream needs {wrong} (resolve_config sets them)")
    c = cfg.chunking
    if c.items_per_block < 1 or c.max_blocks < 1 or c.block_token_budget < 8:
        raise ConfigError("chunking: items_per_block and max_blocks must be >= 1, block_token_budget >= 8")
    s = cfg.summary
    if s.max_new_tokens < 1 or s.batch_size < 1 or s.max_sentences < 1:
        raise ConfigError("summary: max_new_tokens, batch_size and max_sentences must be >= 1")
    t = cfg.sft
    if t.lora_r < 1 or t.batch_size < 1 or t.grad_accum < 1 or t.learning_rate <= 0:
        raise ConfigError("sft: lora_r, batch_size and grad_accum must be >= 1 and learning_rate > 0")
    if s.merge_fan_in < 2:
        raise ConfigError("summary.merge_fan_in must be at least 2 (a merge reads several summaries)")
    if cfg.eval.sft_seeds < 1 or t.seed_offset < 0:
        raise ConfigError("eval.sft_seeds must be >= 1 and sft.seed_offset >= 0")
    if t.shared_prefix and (t.loss == "whole" or t.gradient_checkpointing):
        raise ConfigError("sft.shared_prefix learns the answers only (sft.loss answer or yes_no) and needs the "
                          "prefix's key/value cache (sft.gradient_checkpointing: false): set sft.shared_prefix: "
                          "false for sft.loss whole or gradient checkpointing")
    if cfg.model.scoring_dtype is not None and cfg.model.quantization is not None:
        raise ConfigError("model.scoring_dtype needs unquantized weights (model.quantization: null): a quantized "
                          "model computes in its own precision")
    b = cfg.beyond
    if (b.users < 0 or b.train_users < 0 or not 1 <= b.orders <= 50 or b.train_orders < 1 or b.timing_users < 1
            or not 1 <= b.retrieve <= 26):
        raise ConfigError("beyond: users and train_users must be >= 0, orders between 1 and 50 (the seeds of the "
                          "training and re-ranking orders come after them), train_orders and timing_users >= 1, and "
                          "retrieve between 1 and 26 (a listwise prompt labels its candidates A-Z)")
    e = cfg.eval
    for key, names, known in (("eval.baselines", e.baselines, BASELINES), ("eval.llm", e.llm, LLM_ROWS),
                              ("eval.all_interactions", e.all_interactions, ID_BASELINES)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"{key}: unknown {unknown}; known: {list(known)}")


def with_overrides(cfg: Config, overrides: Mapping[str, Any], run_dir: str | os.PathLike[str] | None = None,
                   control: bool = False) -> Config:
    """A validated copy of ``cfg`` with dotted ``overrides`` applied (and another run_dir if given).

    The same checks as :func:`resolve_config` (unknown keys, types, choices); ``cfg`` is not modified. ``control``:
    the settings of notebook 08's oracle positive control (``sft.summary: oracle``), refused everywhere else.
    """
    raw = _with_protocol(_deep_merge(cfg.to_dict(), _expand_dotted(overrides)), overrides)
    if run_dir is not None:
        raw["run_dir"] = str(Path(run_dir).resolve())
    new = _build(Config, raw, "")
    _validate(new, control or cfg.sft.summary == "oracle")  # a control's own settings stay its own
    return new


def default_run_dir(profile: str) -> Path:
    root = Path(os.environ.get("TRSR_RUNS_DIR", REPO_ROOT / "runs"))
    return root / Path(profile).stem


def resolve_config(
    profile: str = "demo",
    run_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Profile + overrides -> a validated :class:`Config` with an absolute run_dir."""
    raw = load_profile(profile)
    raw = _with_protocol(_deep_merge(raw, _expand_dotted(overrides or {})), overrides or {})
    raw["profile"] = Path(profile).stem
    for key in ("run_dir",):
        raw.pop(key, None)
    cfg = _build(Config, raw, "")
    cfg.run_dir = str(Path(run_dir).resolve() if run_dir else default_run_dir(profile).resolve())
    _validate(cfg)
    return cfg


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` (command-line ``--set`` values) -> ``{"a.b": 1}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
