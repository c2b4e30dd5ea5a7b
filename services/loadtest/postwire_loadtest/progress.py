"""Live progress on stderr: a rich progress bar on a terminal, a plain line every few seconds
elsewhere (CI logs, `kubectl logs` of a Job), or nothing."""

from __future__ import annotations

import sys
import time

PLAIN_EVERY = 5.0


class Progress:
    def __init__(self, mode: str = "auto"):
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self.counters: dict[str, int] = {}
        self._phase = ""
        self._total: int | None = None
        self._counter: str | None = None
        self._last_plain = 0.0
        self._started = time.monotonic()
        self._rich = None
        self._task = None
        if mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
                transient=False,
                refresh_per_second=4,
            )
            self._rich.start()

    def _stats(self) -> str:
        c = self.counters
        parts = [f"open {c.get('open', 0)}", f"live {c.get('live', 0)}", f"receipts {c.get('receipts', 0)}"]
        if c.get("outstanding"):
            parts.append(f"outstanding {c['outstanding']}")
        if c.get("errors"):
            parts.append(f"errors {c['errors']}")
        return "  ".join(parts)

    def phase(self, name: str, total: int | None = None, counter: str | None = None) -> None:
        self._phase, self._total, self._counter = name, total, counter
        if self._rich is not None:
            if self._task is not None:
                self._rich.stop_task(self._task)
            self._task = self._rich.add_task(name, total=total, stats=self._stats())
        elif self.mode == "plain":
            self._line(force=True)

    def update(self, **counters: int) -> None:
        self.counters.update(counters)
        if self._rich is not None and self._task is not None:
            done = self.counters.get(self._counter, 0) if self._counter else None
            self._rich.update(self._task, completed=done, stats=self._stats())
        elif self.mode == "plain":
            self._line()

    def note(self, text: str) -> None:
        if self._rich is not None:
            self._rich.console.print(text)
        elif self.mode == "plain":
            print(f"[{time.monotonic() - self._started:7.1f}s] {text}", file=sys.stderr, flush=True)

    def _line(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < PLAIN_EVERY:
            return
        self._last_plain = now
        done = ""
        if self._counter and self._total:
            done = f" {self.counters.get(self._counter, 0)}/{self._total}"
        print(f"[{now - self._started:7.1f}s] {self._phase}{done}  {self._stats()}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
