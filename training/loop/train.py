"""``python -m training.train --config faa [--config small] --data DIR --out RUN [key=value ...]``.

Distributed: ``torchrun --nproc_per_node N -m training.train ...`` (same
arguments; ``optim.batch_size`` stays the global batch and must divide by N).
Only rank 0 prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import json

from training.config import load_config


def pick_device(choice: str) -> str:
    """The training device: under torchrun each rank takes the GPU of its LOCAL_RANK."""
    import os

    import torch

    if choice == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {choice}: CUDA is not available on this machine (use --device cpu or auto)")
    if choice != "cpu" and not choice.startswith("cuda"):
        raise SystemExit(f"--device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    return choice


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description="train FAA or a baseline")
    p.add_argument(
        "--config", required=True, action="append",
        help="YAML path or a name in training/configs/ (faa, sl, ...); repeat to merge, e.g. --config faa --config small",
    )
    p.add_argument("--data", required=True, help="feature store or synthetic world folder")
    p.add_argument("--out", required=True, help="run folder (resumes if it holds state.pt)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="auto",
                   help="auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("overrides", nargs="*", help="config overrides: section.key=value")
    args = p.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    from . import distributed
    from training.loop.trainer import Trainer

    distributed.init_from_env()  # a no-op without torchrun
    try:
        trainer = Trainer(cfg, args.data, args.out, progress=not args.no_progress, device=pick_device(args.device))
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
