"""Linear warm-up then step decay, as a LambdaLR factor (its state resumes with the run)."""

from __future__ import annotations

from bisect import bisect_right

import torch


def warmup_multistep(optimizer: torch.optim.Optimizer, warmup_iterations: int, warmup_factor: float,
                     steps: tuple[int, ...], gamma: float) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(iteration: int) -> float:
        decay = gamma ** bisect_right(steps, iteration)
        if iteration < warmup_iterations:
            alpha = iteration / warmup_iterations
            return decay * (warmup_factor * (1 - alpha) + alpha)
        return decay

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
