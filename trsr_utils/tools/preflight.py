"""Before a long run: everything that would stop it, found in seconds instead of hours (notebook 10).

    python -m trsr_utils preflight --profile paper-mind [--out DIR] [--set KEY=VALUE ...]

:func:`check` returns every problem it finds (an empty list: go), :func:`require` raises one
:class:`PreflightError` listing them all. The checks:

* a CUDA GPU is visible when the profile needs one (``model.device: cuda``, or ``auto`` with a quantized or
  billion-parameter model);
* each model fits the GPU's free memory as :mod:`trsr_utils.tools.plan` estimates it (weights at their precision,
  the key/value cache of a batch, training state);
* bfloat16 is supported by the GPU (compute capability 8.0) when a setting asks for it;
* bitsandbytes imports and runs one real 8-bit matrix product on the GPU when a model is quantized;
* the raw data files exist (:func:`trsr_utils.data.preparation.raw_files`);
* every model loads offline: a registered model's package, a local folder with a config and weights, or a hub
  id whose snapshot is in the Hugging Face cache (compute nodes often have no internet; gated models such as
  Llama-2 need the licence accepted, a token and a download beforehand), with every shard a sharded checkpoint's
  index names (an interrupted download leaves the index without them);
* ``--gpus N`` is no more than the GPUs this process sees;
* the run directory's disk has room for checkpoints, caches and results.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from trsr_utils.method import llm
from trsr_utils.tools import plan
from trsr_utils.core.config import Config, ConfigError, parse_sets, resolve_config
from trsr_utils.data.preparation import raw_files
from trsr_utils.core.distributed import local_rank

GB = 1e9
BIG_MODEL = 1e9  # parameters from which running on a CPU is not a plan (``model.device: auto``)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


class PreflightError(RuntimeError):
    """A run that would fail: every reason, one per line."""


def _models(cfg: Config) -> dict[str, str]:
    """model name -> the roles it plays (summarizer, recommender, an ablation summarizer)."""
    out: dict[str, list[str]] = {}
    for role, name in (("summarizer", cfg.model.summarizer), ("recommender", cfg.model.recommender)):
        out.setdefault(name, []).append(role)
    for name in cfg.eval.ablation_summarizers:
        out.setdefault(name, []).append("ablation summarizer")
    return {name: " and ".join(roles) for name, roles in out.items()}


def _params(name: str) -> float | None:
    try:
        return plan.model_spec(name).params
    except ValueError:
        return None


def needs_gpu(cfg: Config) -> bool:
    """Does the profile need CUDA: device cuda, or auto with a quantized model or one of a billion parameters."""
    m = cfg.model
    if m.device == "cuda":
        return True
    if m.device == "cpu":
        return False
    quantized = any(m.precision(r)[1] for r in ("summarizer", "recommender"))
    return quantized or any((_params(n) or 0) >= BIG_MODEL for n in _models(cfg))


def check_cuda(cfg: Config) -> list[str]:
    import torch

    if not needs_gpu(cfg) or torch.cuda.is_available():
        return []
    why = "model.device is cuda" if cfg.model.device == "cuda" else "a model is quantized or has a billion parameters"
    return [f"no CUDA GPU visible ({why}; torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}): run on a GPU node, or set model.device: cpu"]


def memory_needed(cfg: Config) -> dict[str, dict[str, float]]:
    """role -> the largest memory (GB) any of its work items needs, with its weights, by :func:`plan.plan`."""
    p = plan.plan(cfg, "h200")  # the hardware does not change the memory estimate
    out: dict[str, dict[str, float]] = {}
    for item in p.items:
        role = item["role"] if item["model"] in (cfg.model.summarizer, cfg.model.recommender) else item["model"]
        if item["memory_gb"] > out.get(role, {}).get("total", -1):
            out[role] = {"total": item["memory_gb"], "weights": item["weights_gb"], "batch": item["batch"],
                         "label": f"{item['stage']} {item['label']}"}
    return out


def check_gpu_memory(cfg: Config) -> list[str]:
    """Each role's largest planned need against the free memory of this process's GPU (``LOCAL_RANK`` under a
    launcher, else 0; only where CUDA is visible)."""
    import torch

    if not needs_gpu(cfg) or not torch.cuda.is_available():
        return []
    gpu = local_rank()
    free, total = torch.cuda.mem_get_info(gpu)
    problems = []
    for role, need in memory_needed(cfg).items():
        if need["total"] * GB > free:
            problems.append(
                f"{role}: needs about {need['total']:.1f} GB ({need['weights']:.1f} GB of weights; the rest is the "
                f"key/value cache or training state of {need['label']}, batch {need['batch']:g}) but GPU {gpu} has "
                f"{free / GB:.1f} of {total / GB:.1f} GB free: use a larger GPU, quantize "
                "(model.summarizer_quantization / model.quantization: 8bit), or lower the batch size")
    return problems


def uses_bfloat16(cfg: Config) -> list[str]:
    """The settings that put a model or a training step in bfloat16."""
    m = cfg.model
    named = {"model.dtype": m.dtype, "model.summarizer_dtype": m.summarizer_dtype,
             "model.scoring_dtype": m.scoring_dtype, "sft.mixed_precision": cfg.sft.mixed_precision}
    return [k for k, v in named.items() if v == "bfloat16"]


def check_bfloat16(cfg: Config) -> list[str]:
    """bfloat16 needs compute capability 8.0 (A100, H100, L4, RTX 30xx on): a V100 or T4 summarizes for hours and
    then fails at SFT."""
    import torch

    wanted = uses_bfloat16(cfg)
    if not wanted or not torch.cuda.is_available():
        return []
    gpu = local_rank()
    major, minor = torch.cuda.get_device_capability(gpu)
    if (major, minor) >= (8, 0):
        return []
    return [f"GPU {gpu} ({torch.cuda.get_device_name(gpu)}, compute capability {major}.{minor}) has no bfloat16, which "
            f"{', '.join(wanted)} ask for: it needs 8.0 (A100, H100, L4 and later). Set those to float16 (the "
            "recommender trains with fp16 mixed precision), or use a newer GPU"]


def cpu_bfloat16(cfg: Config) -> str:
    """On a CPU-only run, what bfloat16 settings this CPU would emulate (slowly), as a warning; "" when none."""
    m = cfg.model
    wanted = [k for k in uses_bfloat16(cfg) if k != "sft.mixed_precision"]
    if not wanted or needs_gpu(cfg) or llm.resolve_device(m.device) != "cpu" or llm.cpu_bfloat16_native():
        return ""
    return llm.emulated_bfloat16_message(f"{', '.join(wanted)} ask{'s' if len(wanted) == 1 else ''} for bfloat16")


def check_bitsandbytes(cfg: Config) -> list[str]:
    quantized = sorted({q for r in ("summarizer", "recommender") if (q := cfg.model.precision(r)[1])})
    if not quantized:
        return []
    if importlib.util.find_spec("bitsandbytes") is None:
        return [f"model quantization {'/'.join(quantized)} needs bitsandbytes, which is not installed: "
                "pip install -e '.[gpu]' -c constraints.txt"]
    import contextlib
    import io

    try:
        # Without CUDA it logs which kernels it could not load: its import is checked, its chatter not shown.
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import bitsandbytes  # noqa: F401
    except Exception as exc:  # it imports CUDA libraries: any failure is the message to show
        return [f"bitsandbytes is installed but does not import: {exc.__class__.__name__}: {exc}"]
    return _bitsandbytes_forward()


def _bitsandbytes_forward() -> list[str]:
    """One real 8-bit matrix product on this process's GPU: an import succeeds even with a binary built for
    another CUDA or GPU, and the run would fail only when the summarizer first generates."""
    import torch

    if not torch.cuda.is_available():
        return []  # check_cuda says what is missing
    import bitsandbytes as bnb

    gpu = local_rank()
    try:
        with torch.no_grad():
            layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False, threshold=6.0).to(f"cuda:{gpu}")
            out = layer(torch.randn(4, 64, dtype=torch.float16, device=f"cuda:{gpu}"))
        if not torch.isfinite(out).all():
            raise RuntimeError("non-finite output")
    except Exception as exc:
        return [f"bitsandbytes imports but its 8-bit matrix product fails on GPU {gpu}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''} (a wheel built for another CUDA?): reinstall it "
                "for this node's CUDA, or set model.summarizer_quantization / model.quantization to null"]
    return []


def missing_shards(index: str | Path, present: Any) -> list[str]:
    """The weight files a sharded checkpoint's index (``*.index.json``) names that ``present(file)`` says are
    not there: an interrupted download leaves the index without all of its shards."""
    import json

    weight_map = json.loads(Path(index).read_text())["weight_map"]
    return sorted(f for f in set(weight_map.values()) if not present(f))


def check_data(cfg: Config) -> list[str]:
    try:
        files = raw_files(cfg)
    except Exception as exc:  # e.g. the embedded MovieLens copy missing with its package
        return [f"data: cannot locate the raw files of {cfg.data.dataset}: {exc}"]
    missing = [str(p) for p in files if not Path(p).exists()]
    if not files and cfg.data.dataset != "movielens-100k":
        return [f"data: data.source_dir is not set for dataset {cfg.data.dataset}"]
    if not missing:
        return []
    how = {"mind": "python -m trsr_utils download mind --size large --dest data/raw/mind",
           "amazon-m2": "see data/README.md (KDD Cup 2023 files)"}.get(cfg.data.dataset, "see data/README.md")
    return [f"data: {len(missing)} raw file(s) missing: {', '.join(missing[:4])}; fetch them first ({how})"]


def check_model_offline(name: str, roles: str = "model") -> list[str]:
    """Can ``name`` be loaded without internet access?"""
    if name in llm.OFFLINE:
        try:
            llm.smollm2_gguf_dir()
        except llm.ModelNotAvailable as exc:
            return [f"{roles} {name}: {exc}"]
        return []
    folder = Path(name).expanduser()
    if folder.is_dir():
        missing = [f for f in ("config.json",) if not (folder / f).exists()]
        if not any((folder / f).exists() for f in WEIGHT_FILES):
            missing.append("weights (model.safetensors or pytorch_model.bin, or their index)")
        for index in (f for f in WEIGHT_FILES if f.endswith(".index.json") and (folder / f).exists()):
            shards = missing_shards(folder / index, lambda f: (folder / f).exists())
            if shards:
                missing.append(f"{len(shards)} shard(s) its {index} names ({', '.join(shards[:3])}): an "
                               "incomplete download")
        return [f"{roles} {name}: local folder without {', '.join(missing)}"] if missing else []
    if name.startswith(("/", "./", "../", "~")):
        return [f"{roles} {name}: no such folder"]
    has_config = plan.spec.cached_hub_file(name, "config.json")
    has_weights = any(plan.spec.cached_hub_file(name, f) for f in WEIGHT_FILES)
    if has_config and has_weights:
        for index in (f for f in WEIGHT_FILES if f.endswith(".index.json")):
            path = plan.spec.cached_hub_file(name, index)
            readable = path and Path(path).exists()
            shards = missing_shards(path, lambda f: plan.spec.cached_hub_file(name, f)) if readable else []
            if shards:
                return [f"{roles} {name}: {len(shards)} shard(s) its {index} names are not in the Hugging Face cache "
                        f"({', '.join(shards[:3])}): an incomplete download; run hf download {name} again"]
        return []
    gated = " It is gated: accept its licence on huggingface.co with your account first." if name.lower().startswith(
        "meta-llama/") else ""
    return [f"{roles} {name}: not in the Hugging Face cache ({'no weights' if has_config else 'no config.json'} "
            f"under {_hub_cache()}), and compute nodes are often offline.{gated} On a machine with internet: "
            f"hf auth login (or set HF_TOKEN), then hf download {name} (with HF_HOME on storage the compute nodes "
            "read), and run with HF_HUB_OFFLINE=1; or give a local folder."]


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def check_models(cfg: Config) -> list[str]:
    return [p for name, roles in _models(cfg).items() for p in check_model_offline(name, roles)]


def disk_needed_gb(cfg: Config) -> float:
    """A generous estimate of what the run writes: the LoRA checkpoints (weights, gradients-free AdamW state:
    12 bytes per trainable parameter each), plus 2 GB for caches, summaries, scores and notebooks."""
    import math

    try:
        spec = plan.model_spec(cfg.model.recommender)
    except ValueError:
        return 2.0
    lora = spec.lora_params(cfg.sft.lora_r, cfg.sft.target_modules)
    t = cfg.sft
    rows = cfg.data.n_train * (1 if t.shared_prefix else 1 + cfg.data.train_negatives)
    steps = t.max_steps or math.ceil(rows / (t.batch_size * t.grad_accum) * t.epochs)
    checkpoints = math.ceil(steps / t.save_steps) if t.save_steps else max(1, math.ceil(t.epochs))
    adapters = max(1, len([r for r in cfg.eval.llm if r != "zero_shot"])) * cfg.eval.sft_seeds
    return 2.0 + lora * 12 * checkpoints * adapters / GB


def check_disk(cfg: Config) -> list[str]:
    folder = Path(cfg.run_dir)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free / GB
    need = disk_needed_gb(cfg)
    if free < need:
        return [f"disk: {free:.1f} GB free under {folder} for the run directory {cfg.run_dir}, about {need:.1f} GB "
                "needed (checkpoints, caches, results): free space or pass another --out"]
    return []


def check_gpus(gpus: int) -> list[str]:
    """``--gpus N`` against the GPUs this process sees (one process per GPU)."""
    import torch

    if gpus <= 1:
        return []
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus <= seen:
        return []
    fewer = f"pass --gpus {seen}" if seen > 1 else "run on one process (without --gpus)" if seen else "run on a GPU node"
    return [f"--gpus {gpus} but this process sees {seen} GPU(s) (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}): ask the scheduler for {gpus}, or {fewer}"]


CHECKS = (check_cuda, check_gpu_memory, check_bfloat16, check_bitsandbytes, check_data, check_models, check_disk)


def check(cfg: Config) -> list[str]:
    """Every problem that would stop a run of ``cfg`` (empty: none found)."""
    problems: list[str] = []
    for fn in CHECKS:
        try:
            problems += fn(cfg)
        except Exception as exc:  # a check that cannot run is a problem to list, not a traceback hiding the rest
            problems.append(f"{fn.__name__} could not run: {exc.__class__.__name__}: {exc}")
    return problems


def require(cfg: Config) -> None:
    """Raise :class:`PreflightError` listing every problem :func:`check` finds."""
    problems = check(cfg)
    if problems:
        raise PreflightError(f"profile {cfg.profile!r} cannot run here ({len(problems)} problem"
                             f"{'s' if len(problems) > 1 else ''}):\n" + "\n".join(f"- {p}" for p in problems))


def stage_arguments(parser: Any) -> Any:
    """The options every stage's command line takes (``python -m trsr_utils summarize`` etc.)."""
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--run-dir", "--out", dest="run_dir", default=None,
                        help="run directory (default runs/<profile>); --out as `run` spells it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    return parser


def stage_config(args: Any) -> Config:
    """The validated config of a stage's command line; on a GPU profile, preflight first: every problem with
    this machine is listed before any work."""
    cfg = resolve_config(args.profile, args.run_dir, parse_sets(args.set))
    if needs_gpu(cfg):
        gpus = check_gpus(getattr(args, "gpus", 1))  # sft --gpus N: before the launch (on a CPU: processes)
        if gpus:
            raise PreflightError("\n".join(gpus))
        require(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper-mind")
    parser.add_argument("--out", default=None, help="run directory (default runs/<profile>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gpus", type=int, default=1, help="the GPUs the launches will use (one process each)")
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args.profile, args.out, parse_sets(args.sets))
        gpus = check_gpus(args.gpus)
        if gpus:
            raise PreflightError("\n".join(f"- {p}" for p in gpus))
        require(cfg)
    except (ConfigError, PreflightError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{cfg.profile}: every preflight check passed (CUDA, GPU memory, bitsandbytes, data, models offline, disk)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
