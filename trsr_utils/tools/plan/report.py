"""A plan against what a run measured, and the plan's command line (``python -m trsr_utils plan``).

Notebook 10 teaches it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trsr_utils.method import llm
from trsr_utils import stages
from trsr_utils.core.config import Config, ConfigError, parse_sets, resolve_config, with_overrides
from trsr_utils.tools.plan.devices import DEFAULT_QUANT_SLOWDOWN, DEFAULT_UTILIZATION, GB, GPUS
from trsr_utils.tools.plan.roofline import Plan, STAGE_NAMES, plan
from trsr_utils.tools.plan.stats import _stage_dir
from trsr_utils.tools.plan.work import measured_summary_work


def measured_seconds(cfg: Config) -> dict[str, dict[str, Any]]:
    """What the run directory measured per stage: ``stage.json`` seconds (the LLM part the stage times:
    03/04 summarize()'s wall time, 06 the training), 06's validations, and the notebooks' wall time from the
    manifest. A summary stage whose last run replayed every call from the cache (a handed-out re-run) measured no
    generation: it is left out."""
    out: dict[str, dict[str, Any]] = {}
    manifest = Path(cfg.run_dir) / "manifest.json"
    notebooks = {}
    if manifest.exists():
        notebooks = {r["notebook"][:2]: r.get("seconds") for r in json.loads(manifest.read_text()).get(
            "notebooks", []) if r.get("status") == "ok"}
    for name in ("03_hierarchical", "04_recurrent", "06_sft"):
        folder = _stage_dir(cfg, name)
        rec = stages.record(folder) if folder is not None else None
        if not rec:
            continue
        meta = folder / "meta.json"
        if name != "06_sft" and meta.exists() and json.loads(meta.read_text()).get("cache_misses") == 0:
            continue  # every call came from the cache: nothing was generated, so nothing to compare a plan with
        row = {"stage_seconds": rec.get("seconds"), "notebook_seconds": notebooks.get(name[:2])}
        if name == "06_sft" and (folder / "validation.json").exists():
            row["validation_seconds"] = sum(r.get("seconds", 0) for r in json.loads(
                (folder / "validation.json").read_text()))
        out[name[:2]] = row
    return out


def run_hardware(cfg: Config) -> str:
    """The kind of hardware a run on this machine measures on: its GPU (the name and memory matched against
    :data:`GPUS`) where the profile runs on one, else ``cpu``. A GPU the table does not know: ``cpu`` is wrong,
    so it is an error naming the known kinds."""
    if llm.resolve_device(cfg.model.device) != "cuda":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(0).lower()
    memory = torch.cuda.get_device_properties(0).total_memory / GB
    family = [k for k in GPUS if k.split("-")[0] in name]
    if not family:
        raise ValueError(f"GPU {name!r} is not in trsr_utils.tools.plan.GPUS ({sorted(GPUS)}): add its datasheet peaks "
                         "there to compare its measured times with a plan")
    return min(family, key=lambda k: abs(GPUS[k].memory_gb - memory))


def validate(cfg: Config, hardware_kind: str | None = None) -> Any:
    """Predicted against measured seconds per stage for a run on this machine (``hardware_kind``; default
    :func:`run_hardware`: its GPU where the run used one, else the CPU measured here): the plan from the settings
    alone (estimate), the plan fed with the run's own batches (03, 04: the call cache) and statistics, and what
    the run measured. Stages without a measurement are left out."""
    import pandas as pd

    measured = measured_seconds(cfg)
    if not measured:
        return pd.DataFrame(columns=["stage", "predicted s (from settings)", "predicted s (from the run)",
                                     "measured s", "ratio"])

    kind = hardware_kind or run_hardware(cfg)
    blank = with_overrides(cfg, {}, run_dir=Path(cfg.run_dir) / ".plan-no-results")  # nothing measured there
    estimate = plan(blank, kind)
    from_run = plan(cfg, kind)
    ran = measured_summary_work(cfg)
    batches = plan(cfg, kind, work=ran) if ran else None

    def seconds(p: Plan, stage: str, kinds: tuple[str, ...] = ("generate", "score", "train"),
                exclude_label: str = "") -> float:
        return sum(i["seconds"] for i in p.items if i["stage"] == stage and i["kind"] in kinds
                   and (not exclude_label or exclude_label not in i["label"]))

    rows = []
    for stage in ("03", "04"):
        if stage not in measured or not measured[stage]["stage_seconds"]:
            continue
        run_pred = seconds(batches, stage) if batches else seconds(from_run, stage)
        rows.append({"stage": STAGE_NAMES[stage], "what is timed": "summarize() (stage.json seconds)",
                     "predicted s (from settings)": seconds(estimate, stage),
                     "predicted s (from the run)": run_pred, "measured s": measured[stage]["stage_seconds"]})
    if "06" in measured:
        m = measured["06"]
        rows.append({"stage": "06 LoRA SFT: training", "what is timed": "training (stage.json seconds)",
                     "predicted s (from settings)": seconds(estimate, "06", ("train",)),
                     "predicted s (from the run)": seconds(from_run, "06", ("train",)),
                     "measured s": m["stage_seconds"]})
        if m.get("validation_seconds"):
            rows.append({"stage": "06 LoRA SFT: validations", "what is timed": "validation.json seconds",
                         "predicted s (from settings)": seconds(estimate, "06", ("score",)),
                         "predicted s (from the run)": seconds(from_run, "06", ("score",)),
                         "measured s": m["validation_seconds"]})
    table = pd.DataFrame(rows)
    if len(table):
        table["ratio"] = table["predicted s (from the run)"] / table["measured s"]
    return table


# ----------------------------------------------------------------------------- command line
def format_plan(p: Plan) -> str:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3g}".format):
        lines = [f"{p.profile} on {p.gpus} x {p.hardware.name} ({p.hardware.source}; utilisation {p.utilization:g})",
                 "models: " + "; ".join(f"{r} {m['name']} {m['params'] / 1e9:.3g}B params in {m['precision']} "
                                       f"({m['weights_gb']:.1f} GB; shape from {m['source']})"
                                       for r, m in p.models.items()),
                 "", p.stages().to_string(index=False), ""]
    lines += [f"- {n}" for n in p.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils plan", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper-mind")
    parser.add_argument("--out", default=None, help="run directory (measured statistics are read from it)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gpu", default="a100-80gb", help=f"one of {sorted(GPUS) + ['cpu']}")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--utilization", type=float, default=None,
                        help=f"share of the datasheet peak reached (default {DEFAULT_UTILIZATION}; cpu: 1, measured)")
    parser.add_argument("--quant-slowdown", type=float, default=DEFAULT_QUANT_SLOWDOWN,
                        help="multiply a bitsandbytes-quantized model's time by this (unknown here: 1)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args.profile, args.out, parse_sets(args.sets))
        p = plan(cfg, args.gpu, args.gpus, args.utilization, args.quant_slowdown)
    except (ConfigError, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(p.to_json(), indent=2, default=str) if args.json else format_plan(p))
    return 0
