import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_METADATA = Path(os.environ.get("REPRO_REAL_METADATA", REPO.parent / "shared" / "data" / "real-metadata"))


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The folder of real metadata files (../shared/data/real-metadata); tests that need it skip without it."""
    if not REAL_METADATA.is_dir():
        pytest.skip(f"real metadata not found at {REAL_METADATA} (set REPRO_REAL_METADATA)")
    return REAL_METADATA
