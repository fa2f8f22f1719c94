"""k-fold cross-validation (the paper's CPS protocol): mean and spread of every metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import ensure_new_dir, write_text_atomic
from .data import Dataset
from .evaluation import evaluate_model, json_safe
from .modeling.weights import load_model
from .training import TrainConfig, train


def folds_of(size: int, folds: int, seed: int) -> list[list[int]]:
    """Image indices of each fold: a seeded permutation cut into `folds` near-equal parts."""
    if not 2 <= folds <= size:
        raise ValueError(f"need 2 <= folds <= images ({size}), got {folds}")
    order = np.random.default_rng(seed).permutation(size)
    return [sorted(int(i) for i in part) for part in np.array_split(order, folds)]


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    return Dataset(dataset.source, [dataset.names[i] for i in indices], lambda k: dataset[indices[k]],
                   [dataset.files[i] for i in indices])


def summarize(per_fold: list[dict]) -> dict:
    """Mean and standard deviation over folds of every numeric leaf of the results."""

    def walk(values: list):
        if isinstance(values[0], dict):
            return {k: walk([v[k] for v in values]) for k in values[0]}
        finite = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
        if not finite:
            return {"mean": float("nan"), "std": float("nan")}
        return {"mean": float(np.mean(finite)), "std": float(np.std(finite))}

    return walk([fold["classes"] for fold in per_fold])


def cross_validate(config: TrainConfig, dataset: Dataset, folds: int, out: str | Path, resume: bool = False,
                   device: str = "auto") -> dict:
    """Train on all folds but one and evaluate on the held-out fold, for each fold, on
    `device`. With `resume`, finished folds are kept and an interrupted fold continues."""
    out = Path(out)
    if not resume:
        ensure_new_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    per_fold = []
    for k, held_out in enumerate(folds_of(len(dataset), folds, config.seed)):
        fold_dir = out / f"fold_{k}"
        result_path = fold_dir / "evaluation.json"
        if result_path.is_file():
            per_fold.append(json.loads(result_path.read_text()))
            continue
        training = [i for i in range(len(dataset)) if i not in set(held_out)]
        train(config, fold_dir, resume=resume and fold_dir.exists(), train_data=subset(dataset, training),
              device=device)
        test = subset(dataset, held_out)
        results = evaluate_model(load_model(fold_dir / "model.safetensors"), test, device)
        write_text_atomic(result_path, json.dumps(json_safe(results), indent=2))
        per_fold.append(results)
    summary = {"folds": folds, "per_fold": per_fold, "summary": summarize(per_fold)}
    write_text_atomic(out / "cv.json", json.dumps(json_safe(summary), indent=2))
    return summary
