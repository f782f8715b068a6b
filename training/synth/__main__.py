"""CLI: ``python -m training.synth --preset tiny [--variant nonlinear ...] --seed 0 --out DIR [--protocol wen2021 --protocol-dir D]``.

``--preset`` takes a preset or a combined world name (``small+nonlinear+bursty``);
``--variant`` adds variants after it; ``--list`` prints presets, variants and the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .presets import get_preset, preset_names, suite_names, variant_names
from .protocol import PROTOCOLS


def _disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.synth", description="Generate a synthetic voice-face world.")
    p.add_argument("--preset", help=f"preset ({', '.join(preset_names())}) or preset+variant+...")
    p.add_argument("--variant", action="append", default=[], help=f"add a variant (repeatable): {', '.join(variant_names())}")
    p.add_argument("--list", action="store_true", help="print presets, variants and the suite's worlds, then stop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="world folder to create")
    p.add_argument("--protocol", choices=PROTOCOLS, help="bind to a real protocol's identities and file names")
    p.add_argument("--protocol-dir", type=Path, help="folder of that protocol's files")
    p.add_argument("--storage", choices=("stored", "procedural"), help="override the preset's storage")
    p.add_argument("--overwrite", action="store_true", help="replace an existing world in --out")
    p.add_argument("--no-report", action="store_true", help="skip the oracle report (truth/oracle.json)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if args.list:
        print("presets: " + ", ".join(preset_names()))
        print("variants: " + ", ".join(variant_names()))
        print("suite: " + ", ".join(suite_names()))
        return 0
    if args.preset is None or args.out is None:
        p.error("--preset and --out are required (or --list)")
    if (args.protocol is None) != (args.protocol_dir is None):
        p.error("--protocol and --protocol-dir go together")

    from .worlddir import build_world

    t0 = time.perf_counter()
    try:
        spec = get_preset(args.preset, variants=args.variant)
        world = build_world(
            spec, args.seed, args.out, protocol=args.protocol, protocol_dir=args.protocol_dir,
            storage=args.storage, overwrite=args.overwrite, report=not args.no_report,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        "world": str(args.out),
        "preset": spec.name,
        "seed": args.seed,
        "storage": world.storage,
        "protocol": world.protocol_name + (" (bound)" if world.bound else " format (own lists)"),
        "identities": world.meta["counts"]["identities"],
        "items": world.meta["counts"]["items"],
        "seconds": round(time.perf_counter() - t0, 2),
        "disk_bytes": _disk_size(args.out),
        "oracle": world.truth.oracle,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k, v in summary.items():
            if k != "oracle":
                print(f"{k:>12}: {v}")
        for name, metrics in summary["oracle"].items():
            for who, got in [("oracle", metrics)] + [(k, v) for k, v in metrics.items() if k.startswith("probe_")]:
                shown = ", ".join(f"{m} {v:.3f}" for m, v in got.items() if m in ("auc", "accuracy", "map_v2f", "map_f2v"))
                print(f"{who:>12}: {name}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
