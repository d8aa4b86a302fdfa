"""Run profiles (YAML) resolved into one typed configuration.

Defaults live here and only here. A profile file overrides them, a profile may
``extends:`` another one, and a notebook or the command line may override single
values with dotted keys (``{"data.n_train": 20}``). Any key that is not a field
of the configuration is an error that names the key and suggests the nearest
valid one: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "profiles"


class ConfigError(ValueError):
    """A profile or override that cannot be turned into a valid configuration."""


@dataclass
class DataConfig:
    """Which raw data to read and how to turn it into samples (notebook 01)."""

    dataset: str = "movielens-100k"  # movielens-100k | mind | amazon-m2
    # Folder with the raw files. For movielens-100k, None means the copy shipped
    # inside the recbole package (no download needed).
    source_dir: str | None = None
    locale: str = "UK"  # amazon-m2 only
    # Paper: users with 10-25 interactions; one sample per user (history -> last item).
    min_interactions: int = 10
    max_interactions: int = 25
    # What to do with users above max_interactions: "drop" them (the paper) or
    # "keep_recent" (keep only their most recent max_interactions items).
    long_history: str = "drop"
    n_train: int = 10_000
    n_valid: int = 1_000
    n_test: int = 1_000
    train_negatives: int = 1
    eval_negatives: int = 20
    # "uniform" over the catalogue, or "impressions" (MIND: the non-clicked news
    # shown beside the positive, topped up uniformly when there are too few), both
    # never the user's own items; "upstream": uniform over the whole catalogue with
    # nothing excluded, the user's history and positive included (the official
    # LLM-TRSR code's draw; eval.protocol: upstream).
    negative_source: str = "uniform"
    # MIND only. "history+clicks": a user's click history, then the news they
    # clicked in their impressions in time order (ours); "history": the click
    # history alone, its last news the positive, impressions ignored (the official
    # code keeps each user's first behaviors row; the history is the same in every
    # row of a user).
    mind_sequence: str = "history+clicks"
    on_error: str = "raise"  # raise | skip (skipped rows are counted and reported)


@dataclass
class TextConfig:
    """How an item becomes one line of text (notebook 02)."""

    # None: the dataset's default attribute order (see trsr_utils.method.text).
    attributes: list[str] | None = None
    include_abstract: bool = False  # MIND: the paper leaves the abstract out
    max_field_tokens: int = 64  # long fields (Amazon descriptions) are capped


@dataclass
class ChunkingConfig:
    """How a history is split into blocks for the summarizer (notebook 02)."""

    items_per_block: int = 5
    block_token_budget: int = 512
    max_blocks: int = 5


@dataclass
class ModelConfig:
    """Which LLMs to use. Names resolve through trsr_utils.method.llm's registry."""

    summarizer: str = "smollm2-135m-instruct"
    recommender: str = "smollm2-135m-instruct"
    dtype: str = "float32"  # float32 | bfloat16 | float16: the recommender's (and the summarizer's unless set)
    quantization: str | None = None  # None | 8bit | 4bit (bitsandbytes, GPU only): the recommender's
    # The frozen summarizer's own precision: the paper ran a 30B summarizer in 8-bit beside a bf16 7B
    # recommender. summarizer_dtype None: ``dtype``; summarizer_quantization None: unquantized.
    summarizer_dtype: str | None = None
    summarizer_quantization: str | None = None
    # The recommender's yes/no scoring passes (06's validation, 07, 08) in another precision than ``dtype``
    # (None: the same). bfloat16 on a CPU with AVX512-BF16 or AMX: faster, and 07 reports how many users' ranks
    # it moved against float32. Training and the summarizer keep ``dtype``.
    scoring_dtype: str | None = None
    device: str = "auto"  # auto | cpu | cuda

    def precision(self, role: str) -> tuple[str, str | None]:
        """(dtype, quantization) the ``role`` ("summarizer" or "recommender") is loaded in."""
        if role == "summarizer":
            return self.summarizer_dtype or self.dtype, self.summarizer_quantization
        if role == "recommender":
            return self.dtype, self.quantization
        raise ValueError(f"unknown model role {role!r}: summarizer or recommender")


@dataclass
class PromptConfig:
    """Recommendation prompt settings (notebook 02 onwards)."""

    domain: str | None = None  # news | products | movies; None: from the dataset
    recent_items: int = 5  # the last k items shown beside the summary
    max_length: int = 2048  # token limit of one recommendation prompt
    summary_max_tokens: int = 256  # the summary is cut to this before anything else


@dataclass
class SummaryConfig:
    """How the frozen summarizer LLM writes preference summaries (notebooks 03-05)."""

    max_new_tokens: int = 64
    max_sentences: int = 3  # generation stops after this many complete sentences
    batch_size: int = 16
    merge_fan_in: int = 5  # hierarchical: how many summaries one merge call reads
    do_sample: bool = False  # greedy by default; sampling is seeded with `seed`
    temperature: float = 0.7
    top_p: float = 0.9
    # A degenerate generation (empty, cut off mid-sentence, looping) is retried
    # once with these settings; what is still unusable is flagged, never hidden.
    retry_repetition_penalty: float = 1.3
    retry_no_repeat_ngram_size: int = 3
    retry_token_factor: float = 1.5


@dataclass
class SFTSettings:
    """LoRA supervised fine-tuning of the recommender (notebook 06)."""

    # Which summary goes into the prompt: hierarchical | recurrent | none (TALLRec-style: recent items only).
    summary: str = "hierarchical"
    # answer: next-token loss on the answer only (prompt masked); yes_no: a 2-way loss over the Yes/No logits
    # (what scoring ranks by); whole: the paper's loss over the whole text.
    loss: str = "answer"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = 1e-4
    batch_size: int = 1  # per device
    grad_accum: int = 64  # effective batch = batch_size x grad_accum x devices (the paper: 64)
    epochs: float = 1.0
    max_steps: int = 0  # > 0: stop after this many optimizer steps (overrides epochs)
    save_steps: int = 0  # 0: a checkpoint (and a validation) at the end of every epoch
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False  # TRL turns it on by default, even on CPU: we decide explicitly
    # One prefix forward per training user, the loss on each of its candidates' answers (the prefix's keys and
    # values shared, as scoring does): batch_size then counts users, each with 1 + data.train_negatives
    # candidates. Needs loss answer or yes_no and no gradient checkpointing; trains under DDP too.
    shared_prefix: bool = False
    # Added to the run's seed for the fine-tuning only (LoRA initialisation, example order, dropout); the data,
    # its negatives and everything else keep the run's seed. eval.sft_seeds trains offsets 0, 1, ...
    seed_offset: int = 0
    # bfloat16: train under autocast (float32 master weights, bf16 matrix products), on a CPU too. Measured here
    # (AVX512-BF16, SmolLM2-135M, LoRA): 2.3x faster steps. None: model.dtype (bf16 on a GPU when dtype is).
    mixed_precision: str | None = None
    logging_steps: int = 5
    valid_users: int = 0  # validation users scored per checkpoint (0: all)
    validate_zero_shot: bool = True  # rank the validation users before training too (step 0 of the curve)
    score_batch_users: int = 4  # users whose candidates are scored in one batch


BASELINES = ("random", "popularity", "item_cf", "tfidf", "embedding",
             "NeuMF", "DIN", "DIEN", "GRU4Rec", "NARM", "SASRec", "CORE")
# The LLM rows of notebook 07 and the summary method in each one's prompt (zero-shot reads the hierarchical one).
LLM_ROWS = {"zero_shot": "hierarchical", "tallrec": "none", "hierarchical": "hierarchical", "recurrent": "recurrent"}
RELIANCE_CONTROLS = ("other_user", "empty", "template")
POSITIVE_CONTROLS = ("template", "oracle")
# The baselines that learn from interactions (the others read text, or nothing).
ID_BASELINES = ("popularity", "item_cf", "NeuMF", "DIN", "DIEN", "GRU4Rec", "NARM", "SASRec", "CORE")


@dataclass
class EvalConfig:
    """Evaluation on the test users' fixed candidates (notebook 07) and the ablation grid (notebook 08)."""

    # Baselines scored on the same candidates: random, popularity, item_cf, tfidf, embedding (all-MiniLM-L6-v2
    # from PyPI) and RecBole models by their RecBole names (NeuMF, GRU4Rec, NARM, SASRec, CORE, DIN, DIEN).
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    # LLM rows: zero_shot (no fine-tuning, hierarchical summary), tallrec (fine-tuned without a summary),
    # hierarchical and recurrent (LLM-TRSR). Missing adapters are trained with the sft settings.
    llm: list[str] = field(default_factory=lambda: list(LLM_ROWS))
    # Baselines (of those in ``baselines``) trained a second time on every interaction outside the evaluation
    # users' held-out positives (for MovieLens-100K: all 943 users, ~100k ratings), shown as "<name> (all users)"
    # beside the row trained on the LLM's training users.
    all_interactions: list[str] = field(default_factory=lambda: ["popularity", "item_cf", "SASRec"])
    # Epochs of a RecBole model in that regime: ~80x more sequences per epoch than the training users' on
    # MovieLens-100K (SASRec: 68 s per epoch on 2 cores), so one epoch is already more updates than 10 there.
    recbole_epochs_all: int = 1
    test_users: int = 0  # 0: all test users
    # Each fine-tuned LLM row trained with this many SFT seeds (sft.seed_offset 0 .. n-1): the table shows their
    # mean and spread, and the paired tests compare each user's metric averaged over the seeds.
    sft_seeds: int = 1
    recbole_epochs: int = 30
    recbole_embedding_size: int = 64
    recbole_max_seq_length: int = 50
    recbole_learning_rate: float = 0.001
    bootstrap: int = 1000  # resamples of the test users for the confidence intervals
    # Also rank the whole catalogue with every non-LLM system (Recall/NDCG@10 beside the sampled 1 + negatives).
    full_catalogue: bool = True
    # Ablations (notebook 08): every value of every axis on its own, one factor at a time around the profile's
    # setting (see trsr_utils.stages.grid.grid).
    ablation_recent_items: list[int] = field(default_factory=lambda: [1, 3, 5])
    ablation_items_per_block: list[int] = field(default_factory=lambda: [3, 5, 10])
    ablation_summarizers: list[str] = field(default_factory=list)  # extra summarizer models to compare
    ablation_finetuned: bool = True  # False: the whole grid zero-shot (no adapters needed)
    # Does the summary matter? (notebook 08, section 4.) Reliance controls: the profile's fine-tuned recommender
    # scored with its summary replaced at inference (no training): another test user's summary (a seeded
    # derangement), an empty summary, the no-LLM template summary.
    reliance_controls: list[str] = field(default_factory=lambda: list(RELIANCE_CONTROLS))
    # Positive controls (each trains one adapter): fine-tuned with the template summary (informative, no LLM), and
    # with the oracle summary that names the held-out positive's attributes (leaks the answer on purpose: a
    # control, never a result).
    positive_controls: list[str] = field(default_factory=lambda: list(POSITIVE_CONTROLS))
    # The order test: the test users' histories summarized again in a seeded shuffled order (new summaries).
    order_test: bool = True
    # The summary's effect over TALLRec is shown (Holm) or bounded by two one-sided tests at this Recall@10 margin.
    equivalence_margin: float = 0.05
    # ours: the paper's text (negatives never the user's own items, MIND's impression clicks, the loss on the
    # answer). upstream: what the official LLM-TRSR code does instead (UPSTREAM below sets it; notebook 07 shows
    # what its negatives change on the same users).
    protocol: str = "ours"


@dataclass
class BeyondConfig:
    """Beyond yes/no per candidate (notebook 09): listwise ranking, position bias, two-stage ranking."""

    users: int = 0  # the first n of notebook 07's test users (0: all of them)
    # Seeded candidate orders per user for the listwise prompt: the position-bias measurement, and the
    # order-averaged (debiased) score averages them. Pointwise scoring is checked in two orders.
    orders: int = 3
    # Listwise fine-tuning: the first n training users (0: all), each in train_orders seeded candidate orders.
    train_users: int = 0
    train_orders: int = 1
    retrieve: int = 20  # items retrieved from the whole catalogue per user before the LLM re-ranks them
    # The order a listwise re-ranker reads the retrieved items in: the retriever's (LlamaRec) or a seeded shuffle.
    rerank_order: str = "retriever"
    timing_users: int = 8  # users scored pointwise and listwise back to back for candidates/s


@dataclass
class Config:
    """Everything one run needs; built by :func:`resolve_config`."""

    profile: str = "demo"
    description: str = ""
    run_dir: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    sft: SFTSettings = field(default_factory=SFTSettings)
    eval: EvalConfig = field(default_factory=EvalConfig)
    beyond: BeyondConfig = field(default_factory=BeyondConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
