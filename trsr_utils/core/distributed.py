"""Spreading a stage's LLM work over processes: one per GPU on a cluster, several nodes through accelerate.

Launch any stage's command line under torchrun or ``accelerate launch``::

    torchrun --nproc_per_node 8 -m trsr_utils summarize --profile paper-mind --method both   # 03 + 04
    accelerate launch --num_processes 8 -m trsr_utils sft --profile paper-mind --all        # 06 (DDP)
    torchrun --nproc_per_node 8 -m trsr_utils evaluation --profile paper-mind               # 07's LLM rows
    torchrun --nproc_per_node 8 -m trsr_utils ablation --profile paper-mind                 # 08's cells
    torchrun --nproc_per_node 8 -m trsr_utils beyond --profile paper-mind                   # 09's scores

then run the notebooks as usual: they find the summaries in the call cache, the adapters and the scores in
their stores. The work is cut where one process already cuts it, into its batches (of prompts to generate, of
users to score), and the batches are dealt to the processes in turn. Each batch is the same computation it is
in one process (same prompts, same padding, same sampling seed), so greedy summaries are identical and scores
equal to float rounding; every process then receives every result (``gather``), so all of them follow the same
control flow (the hierarchical merges, retries) and rank 0 alone writes files. The LLM call cache (SQLite) is
opened by rank 0 only: it reads and writes the database and the other processes receive what it found
(``broadcast``), so the cache works across nodes and on network filesystems where SQLite's locking does not.

Not a notebook's subject: docs/cluster.md shows the commands; notebook 10 prices them.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, TypeVar

T = TypeVar("T")
TIMEOUT_SECONDS = 6 * 3600  # of any collective: the SFT trainer's ddp_timeout too


def world() -> tuple[int, int]:
    """(rank, number of processes) from the launcher's environment (0, 1 when run alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine (its GPU) under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    return world()[1] > 1


def is_main() -> bool:
    """Rank 0: the process that writes (always true when run alone)."""
    return world()[0] == 0


def _state() -> Any:
    from accelerate import PartialState

    import torch

    # The process group (gloo on CPU, NCCL on GPUs), set up once from the launcher's environment; the first
    # caller's timeout stands for the run, so it is SFT's (rank 0 validating 1,000 users while the others wait).
    from datetime import timedelta

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=TIMEOUT_SECONDS))


def barrier() -> None:
    if active():
        _state().wait_for_everyone()


def my_batches(n_batches: int) -> list[int]:
    """The batch indices this process runs: every world-th one, starting at its rank (neighbouring batches,
    similar in length after sorting, go to different processes, so each round costs about the same)."""
    rank, size = world()
    return list(range(rank, n_batches, size))


def gather(items: Sequence[T]) -> list[T]:
    """Every process's ``items``, concatenated in rank order, on every process (``items`` as is when alone)."""
    if not active():
        return list(items)
    from accelerate.utils import gather_object

    _state()
    return list(gather_object(list(items)))


def idle_gpus() -> int:
    """The GPUs a lone process (no launcher) sees beside its own, when it sees several: 0 otherwise."""
    if active():
        return 0
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return n - 1 if n > 1 else 0


def warn_alone(work: str, command: str) -> None:
    """Say loudly, before it starts, that ``work`` is about to run on one GPU while others stand idle (a notebook
    recomputing what the command line, run first, would have shared out): ``command`` with ``{n}`` for the GPUs."""
    idle = idle_gpus()
    if idle:
        import warnings

        warnings.warn(f"{work} is about to run on 1 GPU while {idle} more stand idle. Interrupt and run "
                      f"`{command.format(n=idle + 1)}` first (then this notebook re-uses its results), or go on",
                      stacklevel=2)


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every process (``obj`` as is when alone): what rank 0 alone may read, such as the
    call cache, shared with the others through the process group instead of the filesystem."""
    if not active():
        return obj
    from accelerate.utils import broadcast_object_list

    _state()
    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


def rounds(n_batches: int) -> list[list[int]]:
    """Batch indices in rounds of one batch per process: ``[[0, 1], [2, 3], [4]]`` for 5 batches and 2
    processes. Results are gathered after each round, so an interrupted run loses at most one round."""
    size = world()[1]
    return [list(range(start, min(start + size, n_batches))) for start in range(0, n_batches, size)]
