"""Multi-process training: the process group, the rank's slice of a batch, gradient and stats
reductions, rank-0-only work, and the local launcher behind `hybrid train --gpus N`.

Every rank holds the same training generators and draws the whole global batch each step,
then keeps its own rows (`shard`). Gradients are averaged across ranks before each
optimiser step, so W processes compute what one process computes on the same global batch
(up to float reduction order; batch-norm statistics stay per rank), every rank holds the same
weights and RNG states, and rank 0's checkpoint resumes with any number of processes.

Outside a process group (one process) every helper here is a no-op or returns its input.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from hybridgan.hybrid.errors import Interrupted, RunError, UserError

T = TypeVar("T")

# Rank 0 evaluates metrics alone while the others wait at a collective; a long evaluation
# (FID on 50k samples) must not trip the default 10-minute collective timeout.
TIMEOUT = datetime.timedelta(hours=2)
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# ------------------------------------------------------------------------------------ process group


def launched_by_torchrun() -> bool:
    """Whether torchrun (or the elastic launcher) started this process: RANK, WORLD_SIZE ... are set."""
    return all(k in os.environ for k in ENV_KEYS)


def init_from_env() -> bool:
    """Join the process group described by the environment; False (nothing done) when it is
    not set or the group exists already.

    nccl carries CUDA tensors and gloo CPU tensors (object collectives, CPU training).
    """
    if dist.is_initialized() or not launched_by_torchrun():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return True


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank_from_env() -> int:
    """The global rank the launcher gave this process (0 outside a launch); valid after the group is gone."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The rank's own device: cuda:LOCAL_RANK for CUDA in a process group, else `device`."""
    if device.type == "cuda" and dist.is_initialized():
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank()} has no GPU: {torch.cuda.device_count()} visible; "
                            "start at most that many processes per node")
        return torch.device("cuda", local_rank())
    return device


def check_batch(batch: int) -> None:
    if batch % world_size():
        raise UserError(f"--batch {batch}: the global batch must be divisible by the number of processes "
                        f"({world_size()}); e.g. --batch {batch - batch % world_size() or world_size()}")


# ------------------------------------------------------------------------------------ batch slices


def rows(n: int, rank: int, world: int) -> slice:
    """This rank's rows [rank*n/world, (rank+1)*n/world) of a global batch of n (n divisible by world)."""
    if n % world:
        raise ValueError(f"a batch of {n} does not split evenly over {world} processes")
    per = n // world
    return slice(rank * per, (rank + 1) * per)


def shard(x: T) -> T:
    """This rank's rows of a tensor [B, ...], or of every [B, ...] tensor field of a dataclass."""
    if world_size() == 1:
        return x
    if isinstance(x, Tensor):
        return x[rows(len(x), rank(), world_size())]
    changes = {f.name: shard(v) for f in dataclasses.fields(x) if isinstance(v := getattr(x, f.name), Tensor)}
    return dataclasses.replace(x, **changes)


# ------------------------------------------------------------------------------------ reductions


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (the weights all ranks start from)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def running_buffers(module: torch.nn.Module) -> list[Tensor]:
    """Batch-norm running statistics: the only buffers a training step changes."""
    return [b for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for b in m.buffers()]


def broadcast_buffers(buffers: Iterable[Tensor]) -> None:
    """Rank 0's batch-norm statistics to every rank after a step, as DDP does, so ranks stay identical."""
    if world_size() > 1:
        for b in buffers:
            dist.broadcast(b, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over ranks, in one all-reduce of a flat buffer.

    Why not DistributedDataParallel: one generator forward (Objective.begin) serves two phases,
    the discriminator's requires_grad flips between phases, and R1 runs a double backward; DDP's
    reducer fires once per forward and expects every used parameter to get a gradient, so it
    would need no_sync tricks and find_unused_parameters. Reducing explicitly after each
    phase's backward is simple and exact. Parameters without a gradient are the same on every
    rank (the same graph) and stay without one, so Adam skips them as in one process.
    """
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_named(sums: dict[str, Tensor], counts: dict[str, Tensor]) -> tuple[dict[str, float], dict[str, float]]:
    """Sums and counts of named statistics added over ranks (names missing on a rank count 0)."""
    names = sorted(sums)
    if world_size() > 1:
        every: list[list[str]] = [[] for _ in range(world_size())]
        dist.all_gather_object(every, names)
        names = sorted({n for part in every for n in part})
    zero = torch.zeros(())
    values = torch.stack([sums.get(n, zero).detach().double().cpu() for n in names]
                         + [counts.get(n, zero).detach().double().cpu() for n in names])
    if world_size() > 1:
        dist.all_reduce(values)
    totals = values.tolist()
    return dict(zip(names, totals[: len(names)])), dict(zip(names, totals[len(names) :]))


def any_rank(value: int | None) -> int | None:
    """The largest `value` over ranks (None: 0): a stop signal seen by one rank stops them all
    at the same step."""
    if world_size() == 1:
        return value
    flag = torch.tensor([value or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def max_over_ranks(value: float) -> float:
    """The largest `value` over ranks, e.g. the slowest rank's training time."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def on_main(fn: Callable[..., T], *args: Any) -> T:
    """Run fn on rank 0 only; every rank returns its result or raises its error.

    The result travels by pickle: keep it small (or large and rare, like a resumed state).
    An error on rank 0 is raised on every rank, so no rank waits forever at a collective.
    """
    if world_size() == 1:
        return fn(*args)
    box: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box[0] = ("ok", fn(*args))
        except Exception as e:
            error = e
            box[0] = ("error", e if getattr(e, "exit_code", None) is not None and len(e.args) == 1 else RuntimeError(str(e)))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise error if error is not None else value
    return value


def gather_rows(fn: Callable[[list[T]], Tensor], items: list[T]) -> Tensor:
    """fn(items) [N, ...] computed with the items spread over ranks; every rank gets all rows, in order.

    fn must give row i for items[i] whatever other items it is given (per-seed samples do).
    """
    world = world_size()
    if world == 1:
        return fn(items)
    per = -(-len(items) // world)
    part = fn(items[rank() * per : (rank() + 1) * per]) if rank() * per < len(items) else None
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, part.cpu() if part is not None else None)
    return torch.cat([p for p in parts if p is not None])


# ------------------------------------------------------------------------------------ launching


def launch(nprocs: int, fn: Callable[..., T], *args: Any) -> dict[int, T]:
    """Run fn(*args) in `nprocs` local worker processes with torch's elastic launcher (the engine
    of torchrun); returns each local rank's return value.

    Rendezvous on localhost at a port the OS picks (as `torchrun --standalone`). fn must be a
    module-level function (workers are spawned). A signal to this process is passed on to the
    workers, which then stop at the same step; rank 0 has `shutdown_s` to write its checkpoint.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.5, shutdown_timeout=120)
    try:
        return elastic_launch(config, fn)(*args)
    except SignalException as e:
        raise Interrupted(int(e.sigval)) from None
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if all(f.exitcode in (128 + signal.SIGINT, 128 + signal.SIGTERM) for f in e.failures.values()):
            raise Interrupted(failure.exitcode - 128) from None  # a worker was signalled; all stopped and saved
        raise RunError(f"training process {rank} failed (exit code {failure.exitcode}): "
                       f"{_first_line(failure.message)}; its traceback is above") from None


def _first_line(message: Any) -> str:
    if isinstance(message, dict):  # an error file: {"message": "...", "extraInfo": {...}}
        message = message.get("message", message)
    return str(message).strip().splitlines()[0] if str(message).strip() else "no message"
