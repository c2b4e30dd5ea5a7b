"""What the test tiers share: users, clients, GraphQL documents, Docker helpers.

The load tester's package (services/loadtest) is on pytest's pythonpath (pytest.ini), so tests run
from a checkout without installing it: the GraphQL documents come from it
(tests/support/client.py), and tests/loadtest runs its command line with the same path.
"""

from pathlib import Path

LOADTEST_SRC = Path(__file__).resolve().parents[2] / "services" / "loadtest"
