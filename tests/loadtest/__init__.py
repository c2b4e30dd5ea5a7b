"""Tests of the load tester (services/loadtest). Importing tests.support puts its package on
sys.path, so these tests run from a checkout without installing it."""

import tests.support  # noqa: F401
