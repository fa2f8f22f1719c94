"""Work spread over the processes `torchrun` starts (one per GPU, or CPU processes), on one
machine or many through torchrun's rendezvous: one context for training and inference.

Training averages gradients (DDP) and losses over the processes. Inference has each process
segment its share (whole images, or the tiles of a slide) and gathers the results: every
process holds a slide's detections and what became of each input, as a single process would;
process 0, which writes the outputs, alone receives the images' instances.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from .atomic import atomic_dir
from .errors import DonetError, ProcessLost


def _device_type(name: str, training: bool = False) -> str:
    if name == "auto":
        # Training takes MPS only when asked: before torchvision 0.29, RoIAlign's MPS backward
        # over-accumulated gradients and detection training diverged (pytorch/vision#9510).
        mps = torch.backends.mps.is_available() and not training
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise DonetError(None, f"device {name!r} is not one of auto, cpu, cuda, mps")
    if not available[name]:
        raise DonetError(None, f"device {name!r}: no {name.upper()} device is available")
    return name


class Processes:
    """This process's place among the `world` processes of a run (`rank` 0 of 1 when not
    started by torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.peers: list[tuple[str, int]] = []  # each process's (machine, pid): one that ended is named

    @classmethod
    def from_environment(cls, device: str = "auto") -> Processes:
        """Join torchrun's process group when started by it (gloo on CPU, NCCL on GPUs)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = _device_type(device) == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        processes = cls(dist.get_rank(), dist.get_world_size(), local_rank)
        processes.peers = processes.all_gather((_machine(), os.getpid()))
        # torchrun stops the survivors of a failed process with SIGTERM: stop as after any
        # error, so that temporary outputs are removed on the way out.
        signal.signal(signal.SIGTERM, processes._stopped)
        return processes

    def _stopped(self, *_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the clean-up finish
        # torchrun stops the others once it has waited for the process that ended: no wait here.
        ended = self._ended(wait=0)
        if ended:
            raise ProcessLost(None, f"{self._named(ended)}: process {self.rank} was stopped by torchrun")
        raise ProcessLost(None, f"process {self.rank} of {self.world} was stopped by torchrun: another process failed")

    def _collective(self, call: Callable, *args) -> None:
        """`call(*args)`; a process that is gone (its connection closed) is one clear error."""
        try:
            call(*args)
        except RuntimeError as exc:  # gloo and NCCL report a lost peer so
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # torchrun's stop must not cut the clean-up short
            reason = _reason(exc)
            # A connection can close just before its process ends: wait for it a little.
            ended = self._ended(wait=2.0)
            if ended:
                raise ProcessLost(None, f"{self._named(ended)}: process {self.rank} lost its connection ({reason})") \
                    from None
            raise ProcessLost(None, f"process {self.rank} of {self.world} lost the others ({reason})") from None

    def _ended(self, wait: float) -> list[int]:
        """The other processes on this machine that have ended, looked for up to `wait` seconds
        (a process on another machine cannot be seen)."""
        machine, deadline = _machine(), time.monotonic() + wait
        while True:
            ended = [rank for rank, (where, pid) in enumerate(self.peers)
                     if rank != self.rank and where == machine and not _running(pid)]
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(0.1)

    def _named(self, ranks: list[int]) -> str:
        return f"process{'es' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} of {self.world} ended"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self._collective(dist.barrier)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the processes."""
        if self.world > 1:
            value = value.detach().clone()
            self._collective(dist.all_reduce, value)
            value /= self.world
        return value

    def all_gather(self, item: object) -> list:
        """Every process's `item`, in rank order."""
        if self.world == 1:
            return [item]
        gathered: list = [None] * self.world
        self._collective(dist.all_gather_object, gathered, item)
        return gathered

    def gather(self, item: object) -> list | None:
        """Every process's `item`, in rank order, in process 0 (None in the others)."""
        if self.world == 1:
            return [item]
        gathered: list | None = [None] * self.world if self.main else None
        self._collective(dist.gather_object, item, gathered, 0)
        return gathered

    def broadcast(self, item: object) -> object:
        """Process 0's `item`, in every process."""
        if self.world == 1:
            return item
        box = [item]
        self._collective(dist.broadcast_object_list, box, 0)
        return box[0]

    def device(self, name: str = "auto", training: bool = False) -> torch.device:
        """The device `name` stands for in this process, for training and inference alike:
        "cpu", "cuda" (under torchrun, one GPU per process on a machine; else the current
        one), "mps", or "auto" (CUDA, else MPS, else the CPU; `training`: CUDA, else the
        CPU). One asked for and absent is a one-line error."""
        kind = _device_type(name, training)
        return torch.device("cuda", self.local_rank) if kind == "cuda" and self.world > 1 else torch.device(kind)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @contextmanager
    def output_dir(self, path: Path) -> Iterator[Path]:
        """One new output folder for all processes, made by process 0 under a temporary name
        and renamed when the block succeeds (see `atomic.atomic_dir`)."""
        with ExitStack() as stack:
            folder, problem = None, None
            if self.main:
                try:
                    folder = stack.enter_context(atomic_dir(path))
                except DonetError as exc:
                    problem = str(exc)
            folder, problem = self.broadcast((folder, problem))
            if problem:
                raise DonetError(None, problem)
            try:
                yield folder
                self.all_gather(None)  # every process has written its part before the rename
            except ProcessLost:
                # Process 0 may be the one that is gone: whoever is left removes its folder.
                shutil.rmtree(folder, ignore_errors=True)
                raise


def _reason(exc: Exception) -> str:
    """An error's first line, less gloo's source location ("[/path/pair.cc:561] Connection closed by peer")."""
    line = (str(exc).strip().splitlines() or [""])[0]
    return re.sub(r"^\[[^\]]*:\d+\]\s*", "", line)[:200] or type(exc).__name__


def _machine() -> str:
    """This process's machine: host name and torchrun's node rank (host names can repeat)."""
    return f"{socket.gethostname()}/{os.environ.get('GROUP_RANK', '0')}"


def _running(pid: int) -> bool:
    """Whether process `pid` (on this machine) still runs: not gone, and not a zombie that
    its parent, torchrun's agent, has yet to wait for."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state follows the parenthesised name in /proc/PID/stat
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
