"""``python -m trsr_utils COMMAND ...``: the package's one command-line entry.

Commands, in the order a new user meets them:

    preflight       check the machine and a profile before a long run (``make preflight``)
    run             execute the notebook chain with a profile (``make demo``)
    status          per stage: up to date, or what changed and would be recomputed
    list            the notebooks and profiles
    report          a run's results page from its recorded results
    handout         pack a run directory for students
    strip           strip outputs from notebooks (before committing)
    plan            what a profile costs on a given card (``make plan``)
    bench           the speed and memory benchmarks (``make bench``)
    results-page    docs/benchmarks.md's generated section from ``make bench``'s JSON
    site            the course as a static website (``make site``)
    download        fetch MIND or Amazon-M2 into data/
    layers          list imports that break the package's layers
    judge           does one setting change what a run finds? two runs compared (audit, paired tests)

One stage from the command line, on one process or several (``torchrun ... -m trsr_utils sft ...``), then the
notebook finds its results:

    summarize       notebooks 03 and 04's summaries (--method hierarchical|recurrent|both)
    sft             notebook 06's adapter (--gpus N, --deepspeed, --all: every adapter 07's table needs)
    evaluation      notebook 07's LLM rows into the score store
    ablation        notebook 08's grid (--record PATH: add the controls to a results file)
    beyond          notebook 09's results

``python -m trsr_utils COMMAND --help`` says more about each.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from trsr_utils.core import layers
from trsr_utils.data import download
from trsr_utils.stages import ablation, beyond, evaluation, sft, summarize
from trsr_utils.tools import bench, bench_page, judge, pipeline, plan, preflight, site

PIPELINE = ("run", "status", "list", "report", "handout", "strip")  # subcommands of tools.pipeline
TOOLS: dict[str, Callable[..., int]] = {"preflight": preflight.main, "plan": plan.main, "bench": bench.main,
                                        "results-page": bench_page.main, "site": site.main,
                                        "download": download.main, "layers": lambda argv: layers.main(),
                                        "judge": judge.main}
# Stage commands: the stage module's ``command(cfg, args)`` and, where it has options of its own, ``arguments``.
STAGE_COMMANDS = {"summarize": summarize, "sft": sft, "evaluation": evaluation, "ablation": ablation,
                  "beyond": beyond}


def stage_main(name: str, argv: list[str]) -> int:
    """A stage's command line: the common options, the stage's own, preflight on a GPU profile, then its command."""
    module = STAGE_COMMANDS[name]
    doc = (module.command.__doc__ or "").strip()
    parser = argparse.ArgumentParser(prog=f"python -m trsr_utils {name}", description=doc)
    preflight.stage_arguments(parser)
    if hasattr(module, "arguments"):
        module.arguments(parser)
    args = parser.parse_args(argv)
    return module.command(preflight.stage_config(args), args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in PIPELINE:
        return pipeline.main(argv)
    if command in TOOLS:
        return TOOLS[command](rest)
    if command in STAGE_COMMANDS:
        return stage_main(command, rest)
    print(f"unknown command {command!r}; known: {', '.join(PIPELINE + tuple(TOOLS) + tuple(STAGE_COMMANDS))}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
