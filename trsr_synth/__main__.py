"""``python -m trsr_synth {mind,amazon-m2} --out DIR [--preset smoke|large] [--seed N] [--scale F] [--force]``.

Writes one synthetic dataset (see :mod:`trsr_synth`); refuses to overwrite files already in ``--out`` (which
may be ``data/raw``, holding a real download) unless ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trsr_synth
from trsr_utils.data.preparation import RAW_FILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_synth",
                                     description=trsr_synth.__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=trsr_synth.DATASETS)
    parser.add_argument("--out", required=True, help="folder for the files (created)")
    parser.add_argument("--preset", default="smoke", choices=["smoke", "large"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the preset's counts (e.g. 0.1)")
    parser.add_argument("--force", action="store_true", help="overwrite files already in --out")
    for name in ("news", "impressions", "users", "products", "sessions"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"number of {name} (overrides the preset)")
    args = parser.parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("news", "impressions", "users", "products", "sessions")}
    present = [name for name in RAW_FILES[args.dataset] if (Path(args.out) / name).exists()]
    if present and not args.force:  # --out may well be data/raw: never overwrite a real download unasked
        parser.error(f"{args.out} already holds {', '.join(present)}; pass --force to overwrite")
    info = trsr_synth.generate(args.dataset, args.out, args.preset, args.seed, args.scale, **overrides)
    sizes = ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in info["bytes"].items())
    print(f"{args.dataset} ({args.preset}, seed {args.seed}) -> {args.out}: {sizes} in {info['seconds']} s "
          f"({info['cpu_seconds']} CPU s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
