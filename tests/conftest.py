import importlib.util
import os
from pathlib import Path

import pytest

# Qt without a screen (the napari plugin's tests); set before any Qt application starts.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
# The shared data lives beside the checkout; DONET_DATA points elsewhere.
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data"))
ISBI = DATA / "isbi2014"

# donet.data, donet.io and donet.evaluation work without torch: without it (the second CI
# leg, newest releases on the newest Python) only their tests are collected.
NEEDS_TORCH = ["test_cli.py", "test_cli_engine.py", "test_cv_command.py", "test_default_model.py", "test_demo.py", "test_finetune.py",
               "test_inference.py", "test_model.py", "test_overfit.py", "test_predict_exports.py", "test_predict_inputs.py",
               "test_probability_maps.py", "test_slides.py", "test_targets.py", "test_tiling.py", "test_training.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore = NEEDS_TORCH


@pytest.fixture(scope="session")
def isbi() -> Path:
    if not ISBI.is_dir():
        pytest.skip(f"ISBI2014 data not found at {ISBI} (set DONET_DATA)")
    return ISBI


@pytest.fixture(scope="session")
def real_slides() -> Path:
    """Small real whole-slide files from scanners and other libraries, read in place."""
    folder = DATA / "slides"
    if not folder.is_dir():
        pytest.skip(f"real slides not found at {folder} (set DONET_DATA)")
    return folder
