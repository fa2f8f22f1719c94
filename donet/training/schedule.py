"""Each model size's training schedule, and its learning rate: linear warm-up then step decay."""

from __future__ import annotations

from bisect import bisect_right

import torch

# The paper's (SGD, GPU) and a short AdamW one that converges from scratch on a CPU budget
# (on ISBI 2014 train45 it lowered the loss faster than SGD at 0.02 in 300-iteration
# trials). `warmup`, `decay_at` and `eval_every` are fractions of the run and `scales`
# factors of the model's `min_size` (the shorter side drawn per training image), so a longer
# run or a model at another size keeps their meaning. `TrainConfig` fills every field left
# unset from here.
SCHEDULES = {
    "paper": {"optimizer": "sgd", "iterations": 60000, "base_lr": 0.001, "warmup": 1 / 60, "decay_at": (5 / 6, 11 / 12),
              "scales": (0.8, 0.84, 0.88, 0.92, 0.96, 1.0), "clip_grad_norm": 0.0, "checkpoint_period": 500,
              "eval_every": 1 / 12, "log_period": 20, "freeze_batchnorm": False},
    "light": {"optimizer": "adamw", "iterations": 2000, "base_lr": 0.001, "warmup": 0.1, "decay_at": (0.75, 0.9),
              "scales": (0.875, 0.9375, 1.0, 1.0625, 1.125), "clip_grad_norm": 10.0, "checkpoint_period": 100,
              "eval_every": 0.25, "log_period": 10, "freeze_batchnorm": False},
    # Fine-tuning a trained model (`TrainConfig.init`) on a few of one's own images (2-20) on
    # a CPU: a short warm-up and a low rate, so the model adapts without forgetting; crops at
    # the model's own pixel scale (see `trainer.crop_side`) keep each step's cost independent
    # of the images' size; BatchNorm statistics frozen, as a batch of two crops estimates them
    # badly. 200 steps of 2 crops, about 4 s each for the light model on the slower of the
    # 2-core machines measured (data included): 4 images of 1024 x 1024 take 13.3 minutes,
    # start-up included (benchmarks/results/finetune_shift_1024_fresh.json).
    "finetune": {"optimizer": "adamw", "iterations": 200, "base_lr": 0.0001, "warmup": 0.05, "decay_at": (0.75, 0.9),
                 "scales": (0.875, 0.9375, 1.0, 1.0625, 1.125), "clip_grad_norm": 10.0, "checkpoint_period": 50,
                 "eval_every": 0.25, "log_period": 10, "freeze_batchnorm": True},
}


def warmup_multistep(optimizer: torch.optim.Optimizer, warmup_iterations: int, warmup_factor: float,
                     steps: tuple[int, ...], gamma: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The rate as a LambdaLR factor, so its state resumes with the run."""

    def factor(iteration: int) -> float:
        decay = gamma ** bisect_right(steps, iteration)
        if iteration < warmup_iterations:
            alpha = iteration / warmup_iterations
            return decay * (warmup_factor * (1 - alpha) + alpha)
        return decay

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
