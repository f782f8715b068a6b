"""``python -m training.train --config faa [--config small] --data DIR --out RUN [key=value ...]``.

Distributed: ``torchrun --nproc_per_node N -m training.train ...`` (same
arguments; ``optim.batch_size`` stays the global batch and must divide by N).
Only rank 0 prints and writes the run folder.

Bad input (a config value, a damaged store, a NaN feature, ``--out`` on a
file, a resumed run with another config) ends in one line on stderr and exit
code 2; ``--debug`` shows the traceback instead (``training/cli.py``).
"""

from __future__ import annotations

import argparse
import json
import sys

from pathlib import Path

from faa_core.device import DEVICE_CHOICES, DeviceError, pick_device
from training.cli import DEBUG_FLAG, DEBUG_HELP, UserError, one_line_errors
from training.config import load_config


@one_line_errors("python -m training.train")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description="train FAA or a baseline")
    p.add_argument(
        "--config", required=True, action="append",
        help="YAML path or a name in training/configs/ (faa, sl, ...); repeat to merge, e.g. --config faa --config small",
    )
    p.add_argument("--data", required=True, help="feature store or synthetic world folder")
    p.add_argument("--out", required=True, help="run folder (resumes if it holds state.pt)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="auto", help=DEVICE_CHOICES)
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume a run folder with a config that differs from the one it was started with (warns)")
    p.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
    p.add_argument("overrides", nargs="*", help="config overrides: section.key=value")
    args = p.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder for the run (a new one, or a run to resume)")
    from . import distributed
    from training.loop.trainer import Trainer

    try:
        device = pick_device(args.device)
    except DeviceError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    distributed.init_from_env(device)  # a no-op without torchrun; nccl + set_device on CUDA, gloo on CPU
    try:
        trainer = Trainer(cfg, args.data, args.out, progress=not args.no_progress, device=device,
                          allow_config_change=args.allow_config_change)
        try:
            summary = trainer.train()
        finally:
            trainer.close()
        if distributed.is_main():
            print(json.dumps(summary))
        distributed.barrier()  # leave together: rank 0 still writes summary and plots after the last collective
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
