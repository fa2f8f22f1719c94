"""What every result file records beside its figures: the command, the commit, the package
versions and the machine, so that a figure can be traced and rerun."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "numpy", "pycocotools", "tifffile", "imagecodecs", "openslide-python")


def provenance() -> dict:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0]}
    try:
        import torch

        machine["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "commit": git("rev-parse", "HEAD") + (" (uncommitted changes)" if git("status", "--porcelain", "donet")
                                                   else ""),
            "packages": {name: version(name) for name in PACKAGES}, "machine": machine}
