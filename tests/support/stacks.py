"""The local multi-process stack (devstack.Stack) as the stack and loadtest tiers run it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from devstack.stack import Stack


@contextlib.contextmanager
def running_stack(run_dir: Path, **options) -> Iterator[Stack]:
    """A started Stack (staff user: tests.support.users.STAFF, devstack's default), stopped on
    exit; its logs are removed afterwards unless KEEP_STACK_LOGS is set."""
    with Stack(run_dir=run_dir, **options) as running:
        yield running
    if os.environ.get("KEEP_STACK_LOGS") is None:
        running.cleanup()
