"""Which users become samples: the paper keeps users with 10-25 interactions.

Notebook 01 teaches it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trsr_utils.data.core import UserSequence


@dataclass
class FilterReport:
    users_in: int = 0
    too_short: int = 0
    too_long_dropped: int = 0
    truncated: int = 0
    kept: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def filter_sequences(
    sequences: list[UserSequence],
    min_interactions: int = 10,
    max_interactions: int = 25,
    long_history: str = "drop",
) -> tuple[list[UserSequence], FilterReport]:
    """Keep users whose interaction count fits ``[min, max]``.

    Users above ``max_interactions`` are dropped (``long_history="drop"``, the
    paper) or cut to their most recent ``max_interactions`` items
    (``"keep_recent"``; every MovieLens-100K user has 20+ ratings, so the demo
    needs this).
    """
    if long_history not in ("drop", "keep_recent"):
        raise ValueError(f"long_history must be 'drop' or 'keep_recent', got {long_history!r}")
    report = FilterReport(users_in=len(sequences))
    kept: list[UserSequence] = []
    for seq in sequences:
        n = len(seq.items)
        if n < min_interactions:
            report.too_short += 1
            continue
        if n > max_interactions:
            if long_history == "drop":
                report.too_long_dropped += 1
                continue
            report.truncated += 1
            seq = UserSequence(
                seq.user_id,
                seq.items[-max_interactions:],
                seq.timestamps[-max_interactions:] if seq.timestamps else None,
                seq.impression_negatives,
            )
        kept.append(seq)
    report.kept = len(kept)
    return kept, report
