"""``torch.distributed`` for the engine: one process group per job, rank-0-only side effects,
reductions of metrics, and shards of a pool.

How a job becomes distributed (the way MONAI bundles and MONAI Label's multi-GPU training do it):

* **torchrun** (``torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT] …``) sets
  ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in every worker;
  :func:`init_distributed` reads them.  The entry points (``robustlabel teacher-student``,
  ``robustlabel pseudo-label``, the paper scripts) call it first thing.
* **Local ranks started by Python** (:func:`launch_local`): ``torch.multiprocessing`` starts
  ``N`` processes with the same variables on ``127.0.0.1`` and a free port, as MONAI Label
  0.8.5's ``BasicTrainTask`` does for ``multi_gpu`` (``torch.multiprocessing.spawn``); the
  MONAI Label app's ``ranks`` option and the tests use it.

Backends: NCCL when the job runs on CUDA (each rank takes GPU ``LOCAL_RANK``), gloo on CPU.
The process group's timeout is :data:`DEFAULT_TIMEOUT_S` (10 min, env
``ROBUSTLABEL_DIST_TIMEOUT_S``) instead of the 30 min default: a collective whose peer died
fails within that bound even without torchrun's agent, which on a failed worker tears the whole
group down at once.

Without a process group (``WORLD_SIZE`` unset or 1) every helper here is the identity of a
single process: rank 0 of 1, reductions return their input, the barrier returns at once.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: process-group timeout in seconds (overridden by the environment variable below)
DEFAULT_TIMEOUT_S = 600
TIMEOUT_ENV = "ROBUSTLABEL_DIST_TIMEOUT_S"
#: the environment variables torchrun sets in each worker and :func:`launch_local` sets likewise
RANK_ENV, LOCAL_RANK_ENV, WORLD_SIZE_ENV = "RANK", "LOCAL_RANK", "WORLD_SIZE"
LOOPBACK = "127.0.0.1"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    Attributes:
        rank: global rank ``r ∈ [0, world_size)``.
        world_size: number of processes ``N``.
        local_rank: rank on this node (the GPU index under NCCL).
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (single process, no group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes checkpoints, logs, reports and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process in a live process group."""
        return self.world_size > 1 and self.backend is not None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an int") from None


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun variables (``(0, 1, 0)`` when unset).

    Raises:
        ValueError: a non-integer value, or ``rank`` outside ``[0, world_size)``.
    """
    world = _env_int(WORLD_SIZE_ENV, 1)
    rank = _env_int(RANK_ENV, 0)
    local = _env_int(LOCAL_RANK_ENV, rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def timeout_seconds() -> float:
    """The process-group timeout: ``ROBUSTLABEL_DIST_TIMEOUT_S`` or :data:`DEFAULT_TIMEOUT_S`."""
    value = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    if value <= 0:
        raise ValueError(f"{TIMEOUT_ENV} must be > 0, got {value}")
    return value


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for a CUDA device (when NCCL is built in), else ``"gloo"``."""
    cuda = torch.cuda.is_available() if str(device) == "auto" else torch.device(device).type == "cuda"
    return "nccl" if cuda and dist.is_nccl_available() else "gloo"


def init_distributed(device: str | torch.device = "auto", timeout_s: float | None = None) -> DistContext:
    """Join the job's process group when ``WORLD_SIZE > 1``; return this process' :class:`DistContext`.

    Idempotent: an already initialised group is reused.  With NCCL, ``torch.cuda.set_device(LOCAL_RANK)``
    makes ``device="auto"``/``"cuda"`` mean this rank's GPU.

    Args:
        device: the job's device choice (``"auto"``, ``"cpu"``, ``"cuda"``); picks the backend.
        timeout_s: process-group timeout (default :func:`timeout_seconds`).

    Raises:
        ValueError: an inconsistent torchrun environment.
        RuntimeError: from ``init_process_group`` (e.g. the rendezvous cannot be reached).
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    rank, world, local = env_world()
    if world == 1:
        return DistContext()
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local % max(torch.cuda.device_count(), 1))
    dist.init_process_group(
        backend=backend, init_method="env://", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s or timeout_seconds()),
    )
    logger.info("rank %d/%d joined the %s process group", rank, world, backend)
    return current()


def current() -> DistContext:
    """This process' :class:`DistContext` (single process when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    rank = dist.get_rank()
    return DistContext(rank=rank, world_size=dist.get_world_size(), local_rank=_env_int(LOCAL_RANK_ENV, rank),
                       backend=str(dist.get_backend()))


def close_distributed(wait_for_peers: bool = True) -> None:
    """Leave the process group (no-op without one), so that nothing of it outlives the interpreter.

    Three steps, each against a failure seen with gloo when a job's ranks end within milliseconds
    of each other (about one torchrun run in 50 aborted with ``terminate called without an
    active exception`` and no Python frame, i.e. during interpreter finalisation):

    1. a barrier, so that no rank tears its sockets down while a peer still completes the last
       collective.  Only after a rank's work succeeded (``wait_for_peers``): a failing rank
       leaves at once, so that its peers' next collective fails instead of this one hanging;
       a barrier that fails (a peer is gone) is logged and skipped;
    2. ``destroy_process_group``;
    3. ``gc.collect()``, so that the C++ process group, its worker threads and any pending
       ``Work`` caught in a reference cycle are destroyed now, while the interpreter can still
       take the GIL for the tensors they hold, and not by finalisation (pytorch/pytorch#179291).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait_for_peers and dist.get_world_size() > 1:
        try:
            dist.barrier()
        except Exception as err:  # noqa: BLE001 - a dead peer must not stop this rank from leaving
            logger.warning("rank %d: no closing barrier (%s); leaving the group anyway", dist.get_rank(), err)
    dist.destroy_process_group()
    gc.collect()


def run_as_rank(fn: Callable[[Any, bool], R], args: Any, device: str | torch.device = "auto") -> R:
    """``fn(args, is_main)`` as one rank of the job (a single process outside torchrun).

    The entry points' shared frame: join the process group (:func:`init_distributed`), run, and
    always leave it again, so that a failing rank does not keep its peers waiting.

    Args:
        fn: the work; its second argument is ``True`` on rank 0, which alone reports.
        args: passed through to ``fn``.
        device: as for :func:`init_distributed`.
    """
    ok = False
    try:
        ctx = init_distributed(device)  # under torchrun this process is one rank of the job
        result = fn(args, ctx.is_main)
        ok = True
        return result
    finally:
        close_distributed(wait_for_peers=ok)


def rank_device(device: str | torch.device = "auto") -> torch.device:
    """The device of this rank: with CUDA, ``cuda:LOCAL_RANK`` under a group (the device
    :func:`init_distributed` selected), else :func:`robustlabel.machine.resolve_device`."""
    from ..machine import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if current().distributed:
        dist.barrier()


def _reduce_device() -> torch.device:
    """Tensors of a collective live on the GPU under NCCL, on the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if current().backend == "nccl" else torch.device("cpu")


def all_reduce_mean(values: Mapping[str, float]) -> dict[str, float]:
    """Per key, the mean over ranks ``(1/N) Σ_r v_r`` (float64); the input in a single process."""
    if not current().distributed or not values:
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.cpu().tolist()))


def any_rank(flag: bool) -> bool:
    """``True`` when ``flag`` is true on some rank (e.g. a stop request seen by rank 0 only):
    every rank takes the same branch, so no rank waits alone in a collective."""
    if not current().distributed:
        return bool(flag)
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_reduce_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def broadcast_object(obj: T | None) -> T:
    """Rank 0's ``obj`` on every rank (picklable objects; ``obj`` is ignored on other ranks)."""
    if not current().distributed:
        return obj  # type: ignore[return-value]
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_reduce_device())
    return box[0]  # type: ignore[return-value]


def all_gather_objects(obj: T) -> list[T]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` in a single process)."""
    ctx = current()
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(items: Sequence[T], ctx: DistContext | None = None) -> list[int]:
    """Indices of ``items`` that this rank handles: MONAI ``DistributedSampler(even_divisible=False,
    shuffle=False)``, i.e. rank ``r`` of ``N`` takes ``r, r + N, r + 2N, …``; disjoint, and together
    every index exactly once.  With fewer items than ranks the higher ranks get none.
    """
    from monai.data import DistributedSampler

    ctx = ctx or current()
    if ctx.world_size == 1:
        return list(range(len(items)))
    if len(items) < ctx.world_size:  # MONAI's sampler refuses this case; same rule, by hand
        return [ctx.rank] if ctx.rank < len(items) else []
    sampler = DistributedSampler(list(range(len(items))), even_divisible=False, num_replicas=ctx.world_size,
                                 rank=ctx.rank, shuffle=False)
    return list(sampler)


# --------------------------------------------------------------------------- local launcher
def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


#: seconds between two checks of a local rank that its launcher is still alive
LAUNCHER_POLL_S = 0.5


def _die_with_launcher(launcher_pid: int) -> None:
    """A daemon thread that ends this rank with ``SIGKILL`` once its launcher is gone (the rank
    is re-parented), so that a killed launcher leaves no rank running."""

    def watch() -> None:
        while True:
            if os.getppid() != launcher_pid:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(LAUNCHER_POLL_S)

    threading.Thread(target=watch, name="die-with-launcher", daemon=True).start()


def _local_worker(local_rank: int, fn: Callable[..., Any], nprocs: int, port: int, env: dict[str, str],
                  args: tuple, launcher_pid: int) -> None:
    _die_with_launcher(launcher_pid)
    os.environ.update(env)
    os.environ.update({RANK_ENV: str(local_rank), LOCAL_RANK_ENV: str(local_rank), WORLD_SIZE_ENV: str(nprocs),
                       "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port)})
    ok = False
    try:
        fn(*args)
        ok = True
    finally:
        close_distributed(wait_for_peers=ok)


def launch_local(fn: Callable[..., Any], nprocs: int, args: tuple = (), *, env: Mapping[str, str] | None = None,
                 port: int | None = None) -> None:
    """Run ``fn(*args)`` in ``nprocs`` new processes on this machine, ranks ``0…N−1`` of one job.

    ``torch.multiprocessing.start_processes`` (start method ``spawn``, like ``mp.spawn`` in MONAI
    Label's ``BasicTrainTask``) sets the torchrun variables in each child (``MASTER_ADDR=127.0.0.1``,
    a free ``MASTER_PORT``) plus ``env``; ``fn`` calls :func:`init_distributed` itself.  ``fn``
    must be importable (a module-level function).  When one rank fails or is killed, torch
    terminates the others and raises here; when the launcher itself is killed, each rank ends
    itself within :data:`LAUNCHER_POLL_S`; so no rank is left running.

    Raises:
        ValueError: ``nprocs < 1``.
        torch.multiprocessing.ProcessRaisedException / ProcessExitedException: a rank failed.
    """
    import torch.multiprocessing as mp

    if int(nprocs) < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    mp.start_processes(_local_worker, args=(fn, int(nprocs), port or free_port(), dict(env or {}), tuple(args), os.getpid()),
                       nprocs=int(nprocs), join=True, start_method="spawn")
