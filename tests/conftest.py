import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared data lives beside the checkout; DONET_DATA points elsewhere.
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data"))
ISBI = DATA / "isbi2014"


@pytest.fixture(scope="session")
def isbi() -> Path:
    if not ISBI.is_dir():
        pytest.skip(f"ISBI2014 data not found at {ISBI} (set DONET_DATA)")
    return ISBI
