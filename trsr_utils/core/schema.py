"""The configuration's schema: every section and field with its default (defaults live here and only here).

A profile (``profiles/*.yaml``) sets some of them; :mod:`trsr_utils.core.config` loads and checks it into one
:class:`Config`.

Notebook 01 shows the demo's values of it; docs/extending.md says where a new field goes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


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
    # Which checkpoint becomes the adapter. best: the highest validation selection score (Recall@3+5+10, the
    # paper's rule); last: the final one (a fixed training budget). With a few validation users the best is partly
    # chance, and two recommenders chosen at different steps differ in training as well as in their input.
    select: str = "best"
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
    # The summary axis zero-shot too (beside the fine-tuned cells); False leaves it to the fine-tuned model, for a
    # profile that asks only whether the summary helps the fine-tuned recommender. Ignored when ablation_finetuned
    # is False (the whole grid is zero-shot then).
    ablation_zero_shot: bool = True
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
    # Notebook 07 ranks the baselines and the main fine-tuned row again among the official code's negatives (the
    # LLM row costs one more scoring pass over every test user); False leaves that check out.
    upstream_check: bool = True


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
