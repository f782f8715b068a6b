"""torch.distributed plumbing for ``torchrun`` runs of training and evaluation.

Everything here is a thin layer over ``torch.distributed`` so that the
trainer and the evaluation read as single-process code with a few marked
collective points. Without ``torchrun`` (no ``WORLD_SIZE`` > 1 in the
environment) no process group is created and every helper degrades to the
single-process answer (rank 0 of 1, broadcasts return their input), which
keeps plain runs exactly as they were.

How a training run splits its work, and why the result equals the
single-process run (``tests/test_distributed.py`` checks it):

* every rank draws the *same* global batch from the same seeded generator
  (sampling costs microseconds) and embeds only its contiguous slice of it;
* the slices' embeddings are all-gathered *with gradient*
  (``torch.distributed.nn.functional.all_gather``), so every rank holds the
  global batch's embeddings in the single-process order and computes the
  batch-global losses (multi-positive InfoNCE, Multi-Similarity, Wen's
  two-level loss: none of them is a sum over rank-local terms) and draws the
  same hard negatives from the global similarity matrix;
* the matching loss (a mean of cross-entropies over pairs) *is* a sum: each
  rank scores only the pairs anchored on its slice and contributes their
  cross-entropy sum divided by the global pair count.

With ``L_r`` the loss rank ``r`` back-propagates, the gather's backward sums
the gradients of every rank's loss into the owner of each embedding, and DDP
averages over ranks, so the update is ``(1/W) d(sum_r L_r)/d theta``. Each
rank therefore back-propagates ``G + W * M_r`` (``G`` the replicated global
loss, ``M_r`` its share of the matching loss), whose sum over ranks is
``W * (G + M)``: the single-process gradient, up to float summation order.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def available() -> bool:
    """True when torch was built with torch.distributed."""
    return dist.is_available()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0 (or a plain single-process run): the only writer of run files."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment asks for more than one process (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: str | torch.device = "cpu") -> str:
    """nccl for a CUDA device, gloo for the CPU (collectives run on the tensors' device)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: str | torch.device = "cpu", timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    Returns False, creating nothing, when the run is a single process, so
    that plain ``python -m training.train`` keeps its exact behaviour. The
    timeout must cover the work only rank 0 does while the others wait in a
    broadcast (k-means, validation).
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return is_distributed()
    if not available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend_for(device)
    if backend == "nccl":  # NCCL binds a process to the current GPU: make it this rank's before the group exists
        dev = torch.device(device)
        torch.cuda.set_device(dev if dev.index is not None else torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return True


def teardown() -> None:
    """Leave the process group (no-op when none was created)."""
    if available() and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, world: int) -> int:
    """The per-process share of the global batch; it must divide evenly so every rank's slice matches."""
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    if global_batch % world:
        raise ValueError(
            f"optim.batch_size={global_batch} is the global batch and must divide evenly over the {world} "
            f"processes of this run (torchrun --nproc_per_node); use a multiple of {world}"
        )
    return global_batch // world


def shard_bounds(n: int, world: int, rank_: int) -> tuple[int, int]:
    """Contiguous [lo, hi) of ``n`` items for one rank (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    lo = rank_ * base + min(rank_, extra)
    return lo, lo + base + (1 if rank_ < extra else 0)


def rank_seed(base: int, rank_: int) -> int:
    """Seed of a rank's own torch RNG stream: ``base`` on rank 0, independent streams elsewhere.

    Dropout draws from the global RNG; seeding every rank alike would give
    the ranks' slices identical masks.
    """
    if rank_ == 0:
        return base
    return int(np.random.SeedSequence([base, rank_]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it, on every rank (pickled; for small control data)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main_then_broadcast(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank."""
    return broadcast_object(fn() if is_main() else None)


def gather_objects(obj: Any, dst: int = 0) -> Optional[list[Any]]:
    """Every rank's ``obj`` in rank order on ``dst`` (None elsewhere); ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: Optional[list[Any]] = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Key-wise sum over ranks (every rank must hold the same keys)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def all_gather_cat(t: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
    """Every rank's ``t`` (same shape on all ranks) concatenated in rank order, differentiably.

    The backward pass sums each rank's gradient of the gathered tensor into
    the slice's owner, which is what makes batch-global losses trainable
    with DDP (see the module docstring).
    """
    if not is_distributed():
        return t
    from torch.distributed.nn.functional import all_gather

    kwargs = {} if group is None else {"group": group}
    return torch.cat(all_gather(t, **kwargs), dim=0)


def new_group() -> Optional[Any]:
    """A second process group over all ranks (collective call).

    The embedding gather runs collectives inside backward; on its own group
    they cannot interleave with DDP's bucket all-reduces on the default one.
    """
    if not is_distributed():
        return None
    return dist.new_group(ranks=list(range(world_size())))


def barrier() -> None:
    if is_distributed():
        dist.barrier()
