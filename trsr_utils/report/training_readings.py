"""What notebook 06's training run and adapter show, in sentences computed from the run's report (the readings
beside its curves and AUC plot)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from trsr_utils.method import metrics


def reading(report: dict[str, Any], valid_users: int, random_recall10: float | None = None) -> list[str]:
    """What the training run shows, in sentences computed from its report (``random_recall10``: a random order's
    expected Recall@10, to say where the checkpoints stand against chance)."""
    out = []
    losses = [h["loss"] for h in report["loss_history"]]
    if losses and report["loss"] in ("answer", "yes_no"):
        # The cross-entropy of always answering Yes with probability q, the positives' share of the candidates:
        # all a model that learned only the prior can do (1 positive : 1 negative: q = 1/2, ln 2).
        q = report["positives"] / report["examples"] if report.get("examples") else 0.5
        named, prior = metrics.prior_loss(q)
        last = losses[-1]
        out.append(f"The last logged loss is {last:.3f}; {named} = {prior:.3f} is the loss of answering Yes with "
                   f"probability {q:.2f} every time (the share of positives among the training candidates), which "
                   "is all a model that learned only that prior can do"
                   + (": this adapter's loss is near it, so the loss alone does not show that it learned more than "
                      "the prior (a real but modest separation of positives from negatives barely moves a mean "
                      "cross-entropy); the validation ranks below and the AUC section say whether it did."
                      if abs(last - prior) < 0.1
                      else (": below it, so the adapter separates positives from negatives on the training data."
                            if last < prior - 0.1 else ".")))
    zero, best = report.get("zero_shot"), report["best"]
    out.append(f"{valid_users} validation users: one user moves each Recall@K by {1 / valid_users:.3f}, and the "
               f"selection score (R@3 + R@5 + R@10, at most 3) by up to {3 / valid_users:.3f}.")
    tied = [v["step"] for v in report.get("validation", []) if v["step"] and v["selection"] == best["selection"]]
    if report.get("select", "best") == "last":
        # a fixed training budget: the kept checkpoint is the last, whatever the validation users say of it
        scored = [v for v in report.get("validation", []) if v["step"]]
        top = metrics.chosen_checkpoint(scored) if scored else best  # what sft.select: best would have kept
        others = [s for s in tied if s != best["step"]]
        out.append(f"This profile keeps the last checkpoint (`sft.select: last`), step {best['step']}, whatever its "
                   f"validation score ({best['selection']:.3f}"
                   + (f", the same as step{'s' if len(others) > 1 else ''} {', '.join(map(str, others))}"
                      if others else "")
                   + (f"; the best was {top['selection']:.3f} at step {top['step']}"
                      if top["selection"] > best["selection"] else "") + ").")
    elif len(tied) > 1:
        out.append(f"Checkpoints at steps {', '.join(map(str, tied))} tie at {best['selection']:.3f}; the earliest, "
                   f"step {best['step']}, is kept (`sft.select: best`: the best score, the earlier step on a tie).")
    else:
        zero_part = (f"; step 0, the zero-shot model at {zero['selection']:.3f}, is never chosen"
                     if zero is not None and zero["selection"] > best["selection"] else "")
        out.append(f"This profile keeps the best-scoring checkpoint (`sft.select: best`): step {best['step']}, at "
                   f"{best['selection']:.3f}{zero_part}.")
    if zero is not None:
        gain = best["selection"] - zero["selection"]
        crossings = round(abs(gain) * valid_users)
        out.append(f"The selected checkpoint (step {best['step']}) scores {best['selection']:.3f} against "
                   f"{zero['selection']:.3f} zero-shot: a difference of {gain:+.3f}, about "
                   f"{crossings} user-cut-off crossing{'s' if crossings != 1 else ''}"
                   + (" (below zero-shot: training has not helped on these users)" if gain < 0 else "")
                   + "; notebook 07 measures it on the test users.")
    if random_recall10 is not None:
        r_best, r_zero = best["recall@10"], (zero or {}).get("recall@10")
        below = [name for name, r in (("the selected checkpoint", r_best), ("zero-shot", r_zero))
                 if r is not None and r < random_recall10]
        zero_part = f", {r_zero:.3f} zero-shot" if r_zero is not None else ""
        out.append(f"Recall@10 on validation: {r_best:.3f} selected{zero_part}"
                   + f"; a random order reaches {random_recall10:.3f} on average"
                   + (f": {' and '.join(below)} {'are' if len(below) > 1 else 'is'} below chance here, on "
                      f"{valid_users} users." if below else "."))
    return out


def auc_reading(auc: Any, p_zero: Sequence[Any], p_tuned: Sequence[Any], margin: float = 0.05) -> list[str]:
    """What per-user AUC (columns ``zero-shot``, ``fine-tuned``) says about what the adapter learned, from the
    numbers: a shift of every p(yes) alike moves no AUC, so a model that learned only the prior keeps each user's
    zero-shot AUC while its mean p(yes) moves. Users' AUCs that move both ways while their mean stays are a
    reshuffle, not a ranking learned."""
    z, t = auc["zero-shot"].to_numpy(), auc["fine-tuned"].to_numpy()
    up, down = int((t > z).sum()), int((t < z).sum())
    mz, mt = float(np.mean([p.mean() for p in p_zero])), float(np.mean([p.mean() for p in p_tuned]))
    shift, moved = float(t.mean() - z.mean()), float(np.abs(t - z).mean())
    out = [f"Mean p(yes) over the candidates: {mz:.3f} zero-shot, {mt:.3f} fine-tuned ({mt - mz:+.3f}).",
           f"Mean per-user AUC: {z.mean():.3f} zero-shot, {t.mean():.3f} fine-tuned ({shift:+.3f}); "
           f"{up} of {len(t)} users up, {down} down, {len(t) - up - down} unchanged (.5 is a coin); a user's AUC "
           f"moved by {moved:.3f} on average."]
    yes_rate = " (the mean p(yes) moved)" if abs(mt - mz) >= 0.02 else ""
    if moved < margin:
        out.append(f"Each user's AUC moved by less than {margin:.2f} on average: the adapter ranks each user's "
                   f"candidates much as the base model did. What changed is how often it says Yes{yes_rate}, the "
                   "prior, not which candidate is the user's.")
    elif shift >= margin:
        out.append("The AUCs rose on average: the adapter separates these users' positives from their negatives "
                   "better than the base model, beyond a shift of the Yes rate.")
    elif shift <= -margin:
        out.append("The AUCs fell on average: on these users the adapter separates positives from negatives worse "
                   "than the base model did.")
    else:
        out.append(f"The mean AUC moved by less than {margin:.2f} while single users' AUCs moved both ways: the "
                   f"adapter reshuffled some users' candidates without ranking the positives higher on average; the "
                   f"change shared by all is how often it says Yes{yes_rate}.")
    return out
