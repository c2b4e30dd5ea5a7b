"""Tests of the load tester (services/loadtest). Its package is put on sys.path here, so these
tests run from a checkout without installing it."""

import sys
from pathlib import Path

LOADTEST_SRC = Path(__file__).resolve().parents[2] / "services" / "loadtest"
if str(LOADTEST_SRC) not in sys.path:
    sys.path.insert(0, str(LOADTEST_SRC))
