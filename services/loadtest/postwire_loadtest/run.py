"""The phases of one run, in order:

  1. prepare   log in as staff, create every draft (warm-up and measured) up front
  2. ramp      worker processes open N subscriptions at the ramp rate
  3. warm-up   a subscription has no "live" acknowledgement, so either publish warm-up posts
               until every open subscriber got one (default), or wait a settle period
  4. publish   M posts, open loop at a fixed rate
  5. drain     wait until every open subscriber has every publish, or `drain` seconds
  6. finish    workers close their sockets and hand over every receipt

The whole run is bounded by cfg.timeout: when it expires, the run skips to `finish` and reports
what it has, marked timed_out.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

from postwire_loadtest.config import Config
from postwire_loadtest.netutil import default_source_addresses, raise_nofile_limit
from postwire_loadtest.progress import Progress
from postwire_loadtest.publisher import Publisher, PublishResult
from postwire_loadtest.workers import WorkerPool

WARMUP_INTERVAL = 2.0  # seconds between warm-up posts while some subscriber has none yet


class RunFailed(RuntimeError):
    """The run could not be carried out (no login, no subscriber connected...)."""


@dataclass
class RawRun:
    """Everything observed, before analysis. Times are time.monotonic()."""

    cfg: Config
    source_addresses: list[str]
    nofile: tuple[int, int]
    publishes: list[PublishResult] = field(default_factory=list)
    warmup_posts: list[PublishResult] = field(default_factory=list)
    warmup: dict = field(default_factory=dict)
    workers: dict[int, dict] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # monotonic
    wall_offset: float = 0.0  # time.time() - time.monotonic() at start
    timed_out: bool = False
    dropped: int = 0
    failure: str | None = None
    cpu_marks: dict[str, float] = field(default_factory=dict)  # this (coordinator) process's CPU time
    machine_marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # (idle, total) jiffies

    def mark(self, phase: str) -> None:
        self.phases[phase] = time.monotonic()
        if phase in CPU_PHASES:
            self.cpu_marks[phase] = time.process_time()
            self.machine_marks[phase] = machine_jiffies()


# Phases at which every generator process notes its CPU time: the publish phase lies between them.
CPU_PHASES = ("publish_start", "drain_end")


def machine_jiffies() -> tuple[int, int]:
    """(idle, total) CPU time of the whole machine so far, from /proc/stat (zeros elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


class Runner:
    def __init__(self, cfg: Config, progress: Progress | None = None):
        self.cfg = cfg
        self.progress = progress or Progress("none")
        sources = cfg.source_addresses if cfg.source_addresses is not None else default_source_addresses(cfg.ws_url)
        self.raw = RawRun(
            cfg=cfg, source_addresses=sources, nofile=raise_nofile_limit(), wall_offset=time.time() - time.monotonic()
        )
        self.publisher = Publisher(cfg.url, cfg.graphql_url, cfg.username, cfg.password, cfg.publish_threads)
        self.pool: WorkerPool | None = None

    def run(self) -> RawRun:
        try:
            asyncio.run(self._run())
        finally:
            self.publisher.close()
            if self.pool is not None:
                self.pool.kill()
        return self.raw

    async def _run(self) -> None:
        """The phases run as one task; SIGINT/SIGTERM (Ctrl-C, a Job's deadline) cancel it, and the
        run still collects its receipts and reports what it saw."""
        loop = asyncio.get_running_loop()
        phases = asyncio.create_task(self._phases())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, phases.cancel)
        try:
            await phases
        except asyncio.CancelledError:
            self.raw.failure = "interrupted by a signal"
            self.progress.note("interrupted: collecting what was seen")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if self.pool is not None:
                self.progress.phase("finish: closing sockets, collecting receipts")
                self.raw.workers = await self.pool.finish()
            self.raw.mark("end")
            self.raw.cpu_marks["end"] = time.process_time()
            self.progress.stop()

    async def _phases(self) -> None:
        cfg, raw = self.cfg, self.raw
        raw.mark("start")
        loop = asyncio.get_running_loop()
        warm_titles = [f"{cfg.title_prefix}w{k}" for k in range(1, self._warmup_posts() + 1)]
        titles = [f"{cfg.title_prefix}{n}" for n in range(1, cfg.publishes + 1)]
        try:
            async with asyncio.timeout(cfg.timeout):
                self.progress.phase("prepare: login and drafts")
                await loop.run_in_executor(None, self.publisher.login)
                gids = await loop.run_in_executor(None, self.publisher.create_drafts, warm_titles + titles)
                warm_gids, gids = gids[: len(warm_titles)], gids[len(warm_titles) :]
                raw.mark("prepared")

                self.pool = WorkerPool(cfg, raw.source_addresses)
                self.pool.start()
                await self._ramp()
                if self.pool.total("connected") == 0:
                    raise RunFailed(f"no subscriber connected to {cfg.ws_url}: {self.pool.errors()}")

                await self._warm_up(list(zip(warm_titles, warm_gids, strict=True)))
                if cfg.idle:
                    await self._idle()
                await self._publish(list(zip(titles, gids, strict=True)))
                await self._drain()
        except TimeoutError:
            raw.timed_out = True
            self.progress.note(f"timeout: the run exceeded {cfg.timeout:.0f}s; reporting what was seen")
        except RunFailed as exc:
            raw.failure = str(exc)
        except Exception as exc:  # a PublisherError or a broken pipe: say so in the report
            raw.failure = f"{type(exc).__name__}: {exc}"

    def _warmup_posts(self) -> int:
        if self.cfg.warmup != "publish":
            return 0
        return max(1, int(self.cfg.warmup_timeout / WARMUP_INTERVAL) + 1)

    def _update(self) -> None:
        p = self.pool
        self.progress.update(
            connected=p.total("connected"),
            attempted=p.total("attempted"),
            open=p.total("open"),
            live=p.total("live"),
            receipts=p.total("receipts"),
            outstanding=p.total("outstanding"),
            errors=sum(p.errors().values()),
        )

    async def _ramp(self) -> None:
        cfg = self.cfg
        self.raw.mark("ramp_start")
        self.progress.phase(
            f"ramp: {cfg.subscribers} subscribers at {cfg.ramp_rate:g}/s over {cfg.workers} worker(s)",
            total=cfg.subscribers,
            counter="attempted",
        )
        while not self.pool.all_ramped():
            await self.pool.changed(0.5)
            self._update()
        self.raw.mark("ramp_end")

    async def _warm_up(self, posts: list[tuple[str, str]]) -> None:
        cfg, raw = self.cfg, self.raw
        started = time.monotonic()
        if cfg.warmup == "settle":
            self.progress.phase(f"warm-up: settle {cfg.settle:g}s")
            await asyncio.sleep(cfg.settle)
        elif cfg.warmup == "publish":
            total = self.pool.total("open")
            self.progress.phase("warm-up: publishing until every subscriber got one", total=total, counter="live")
            loop = asyncio.get_running_loop()
            for title, gid in posts:
                result = await loop.run_in_executor(
                    self.publisher.pool, self.publisher.publish, 0, title, gid, time.monotonic()
                )
                raw.warmup_posts.append(result)
                deadline = time.monotonic() + WARMUP_INTERVAL
                while time.monotonic() < deadline and not self._all_live():
                    await self.pool.changed(0.25)
                    self._update()
                if self._all_live() or time.monotonic() - started >= cfg.warmup_timeout:
                    break
        raw.warmup = {
            "method": cfg.warmup,
            "seconds": round(time.monotonic() - started, 3),
            "posts": len(raw.warmup_posts),
            "open": self.pool.total("open"),
            "live": self.pool.total("live"),
        }
        raw.mark("warmup_end")

    async def _idle(self) -> None:
        """Nothing sent: the subscribers sit connected, answering the server's pings."""
        self.progress.phase(f"idle: {self.cfg.idle:g}s with nothing published")
        self.raw.mark("idle_start")
        deadline = time.monotonic() + self.cfg.idle
        while (left := deadline - time.monotonic()) > 0:
            await self.pool.changed(min(left, 0.5))
            self._update()
        self.raw.mark("idle_end")

    def _all_live(self) -> bool:
        # Progress is at most 0.5 s old; "live" counts open subscribers that got a warm-up post.
        return self.pool.total("live") >= self.pool.total("open") > 0

    async def _publish(self, posts: list[tuple[str, str]]) -> None:
        cfg, raw = self.cfg, self.raw
        loop = asyncio.get_running_loop()
        self.progress.phase(
            f"publish: {cfg.publishes} posts at {cfg.rate:g}/s (open loop)", total=cfg.publishes, counter="published"
        )
        futures = []
        sent_ok = 0

        def on_done(future: asyncio.Future) -> None:
            nonlocal sent_ok
            result = future.result()
            raw.publishes.append(result)
            if result.ok:
                sent_ok += 1
                self.pool.broadcast(("sent", sent_ok))
            self.progress.update(published=len(raw.publishes))

        raw.mark("publish_start")
        self.pool.broadcast(("mark", "publish_start"))
        start = time.monotonic()
        for n, (title, gid) in enumerate(posts, start=1):
            due = start + (n - 1) / cfg.rate
            while (delay := due - time.monotonic()) > 0:
                await self.pool.changed(min(delay, 0.5))
                self._update()
            if cfg.drop_subscribers and n == cfg.drop_after_publish + 1:
                raw.dropped = await self.pool.drop(cfg.drop_subscribers)
                self.progress.note(f"test hook: dropped {raw.dropped} subscribers before publish {n}")
            future = loop.run_in_executor(self.publisher.pool, self.publisher.publish, n, title, gid, due)
            future.add_done_callback(on_done)
            futures.append(future)
        self.raw.mark("publish_sent")
        await asyncio.gather(*futures)
        raw.publishes.sort(key=lambda r: r.n)
        raw.mark("publish_end")

    async def _drain(self) -> None:
        """Wait for the stragglers: until no open subscriber misses a publish, or `drain` seconds."""
        cfg = self.cfg
        self.progress.phase(f"drain: up to {cfg.drain:g}s for the last deliveries")
        sent_ok = sum(1 for r in self.raw.publishes if r.ok)
        deadline = self.raw.phases["publish_sent"] + cfg.drain
        while time.monotonic() < deadline:
            await self.pool.changed(min(0.5, max(0.01, deadline - time.monotonic())))
            self._update()
            fresh = all(p.get("sent_seen") == sent_ok for p in self.pool.progress.values())
            if fresh and self.pool.total("outstanding") == 0:
                break
        self.raw.mark("drain_end")
        self.pool.broadcast(("mark", "drain_end"))
