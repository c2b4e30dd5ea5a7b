"""The coordinator's side of the worker processes: start them, read what they say, tell them
what to do. Messages are defined in subscribers.py."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection

from postwire_loadtest.config import Config
from postwire_loadtest.subscribers import WorkerSpec, worker_main


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """(first_index, count) for each part, as even as possible."""
    base, extra = divmod(total, parts)
    out, first = [], 0
    for i in range(parts):
        count = base + (1 if i < extra else 0)
        out.append((first, count))
        first += count
    return out


class WorkerPool:
    def __init__(self, cfg: Config, source_addresses: list[str]):
        self.cfg = cfg
        protocols = (cfg.protocol_for(0), cfg.protocol_for(1)) if cfg.protocol == "mixed" else (cfg.protocol,)
        self.specs = [
            WorkerSpec(
                worker_id=w,
                first_index=first,
                count=count,
                ws_url=cfg.ws_url,
                protocols=protocols,
                ramp_rate=cfg.ramp_rate * count / cfg.subscribers,
                connect_timeout=cfg.connect_timeout,
                source_addresses=source_addresses,
                title_prefix=cfg.title_prefix,
            )
            for w, (first, count) in enumerate(split(cfg.subscribers, cfg.workers))
        ]
        self.progress: dict[int, dict] = {}
        self.ramp_done: set[int] = set()
        self.results: dict[int, dict] = {}
        self.dropped: dict[int, int] = {}
        self._conns: dict[int, Connection] = {}
        self._procs: dict[int, multiprocessing.Process] = {}
        self._changed = asyncio.Event()

    def start(self) -> None:
        # spawn, not fork: the coordinator already has threads (HTTP pool, progress display).
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for spec in self.specs:
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_main, args=(child, spec), name=f"loadtest-worker-{spec.worker_id}", daemon=True
            )
            proc.start()
            child.close()
            self._conns[spec.worker_id] = parent
            self._procs[spec.worker_id] = proc
            loop.add_reader(parent.fileno(), self._on_message, spec.worker_id)

    def _on_message(self, worker_id: int) -> None:
        conn = self._conns[worker_id]
        try:
            kind, body = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            proc = self._procs[worker_id]
            proc.join(timeout=1)
            self.results.setdefault(worker_id, {"worker": worker_id, "crashed": True, "exitcode": proc.exitcode})
            self.ramp_done.add(worker_id)
            self._changed.set()
            return
        if kind == "progress":
            self.progress[worker_id] = body
        elif kind == "ramp_done":
            self.progress[worker_id] = body
            self.ramp_done.add(worker_id)
        elif kind == "dropped":
            self.dropped[worker_id] = body
        elif kind == "results":
            self.results[worker_id] = body
            asyncio.get_running_loop().remove_reader(conn.fileno())
        self._changed.set()

    async def changed(self, timeout: float) -> None:
        """Wait until a worker says something (or timeout)."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def total(self, key: str) -> int:
        return sum(p.get(key, 0) for p in self.progress.values())

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.progress.values():
            for k, v in p.get("errors", {}).items():
                out[k] = out.get(k, 0) + v
        return out

    def all_ramped(self) -> bool:
        return len(self.ramp_done) == len(self.specs)

    def broadcast(self, message) -> None:
        for worker_id, conn in self._conns.items():
            if worker_id in self.results:
                continue
            try:
                conn.send(message)
            except OSError:
                pass

    async def drop(self, k: int, timeout: float = 5.0) -> int:
        """Ask workers to abort k subscribers in total (spread like the sockets are)."""
        self.dropped.clear()
        asked = {}
        for spec, (_, share) in zip(self.specs, split(k, len(self.specs)), strict=True):
            if share:
                self._conns[spec.worker_id].send(("drop", share))
                asked[spec.worker_id] = share
        deadline = asyncio.get_running_loop().time() + timeout
        while set(self.dropped) != set(asked) and asyncio.get_running_loop().time() < deadline:
            await self.changed(0.1)
        return sum(self.dropped.values())

    async def finish(self, timeout: float = 60.0) -> dict[int, dict]:
        self.broadcast(("finish",))
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.results) < len(self.specs) and asyncio.get_running_loop().time() < deadline:
            await self.changed(0.5)
        for worker_id, proc in self._procs.items():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            if worker_id not in self.results:
                self.results[worker_id] = {"worker": worker_id, "crashed": True}
        return self.results

    def kill(self) -> None:
        for proc in self._procs.values():
            if proc.is_alive():
                proc.kill()
