"""A light asynchronous load generator (asyncio, on uvloop where installed).

It measures itself as well as the server.

Work is a list of *deliveries*; a delivery is one or more requests sent at the
same moment (a webhook and its simultaneous duplicate are one delivery of two).
`concurrency` senders take deliveries in order until none are left or the
deadline passes. Webhook bodies are signed at send time, exactly as Stripe
signs them (`tests.stripe_events.sign`), so a long run never trips the
signature's 300 s tolerance.

The rule: the generator shares the machine's cores with the server, so it
reports its own CPU use (`cpu_share`) next to every figure it produces.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.stripe_events import sign


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    webhook_secret: str | None = None  # sign the body with it at send time
    tag: Any = None  # the caller's label (an event id, an order id)


@dataclass
class Sample:
    tag: Any
    status: int | str  # HTTP status, or the name of a transport error
    ms: float
    start: float  # wall clock, for lining up with database timestamps
    attempts: int
    body: bytes = b""


@dataclass
class LoadResult:
    samples: list[Sample]
    wall: float
    cpu: float  # this process's CPU seconds over the run

    @property
    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(str(s.status) for s in self.samples).items()))

    @property
    def cpu_share(self) -> float:
        """This generator's CPU as a % of the machine (all cores) during the run."""
        return round(100 * self.cpu / max(self.wall * (os.cpu_count() or 1), 1e-9), 1)

    def rate(self, ok: Callable[[Sample], bool] = lambda s: s.status == 200) -> float:
        return sum(1 for s in self.samples if ok(s)) / self.wall if self.wall else 0.0

    def latency(self) -> dict[str, float]:
        return percentiles([s.ms for s in self.samples])


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 90, 95, 99)) -> dict:
    if not values:
        return {f"p{p}": None for p in points} | {"max": None, "n": 0}
    ordered = sorted(values)
    out = {}
    for p in points:
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        out[f"p{p}"] = round(ordered[index], 2)
    out["max"] = round(ordered[-1], 2)
    out["n"] = len(ordered)
    return out


async def _http_post(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on its own connection (`Connection: close`); (status, body).

    A few lines of asyncio instead of a client library: this process shares the
    machine with the server, and every microsecond spent here is taken from it.
    """
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    async with asyncio.timeout(timeout):  # one deadline, not a task per wait (`wait_for`)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            raw = await reader.read(-1)
        finally:
            writer.close()
    if not raw.startswith(b"HTTP/"):
        raise ConnectionResetError("no HTTP answer")
    status = int(raw[9:12])
    _, _, payload = raw.partition(b"\r\n\r\n")
    return status, payload


async def _send(
    target: tuple[str, int],
    req: Request,
    *,
    retries: int,
    keep_body: bool,
    timeout: float,
) -> Sample:
    attempts = 0
    started = time.time()
    t0 = time.perf_counter()
    while True:
        attempts += 1
        headers = {"Content-Type": "application/json", **req.headers}
        if req.webhook_secret:
            headers["Stripe-Signature"] = sign(req.body, req.webhook_secret)
        try:
            status, body = await _http_post(*target, req.path, req.body, headers, timeout)
        except (TimeoutError, OSError, ValueError) as exc:
            status, body = type(exc).__name__, b""
        retry = not isinstance(status, int) or status >= 500
        if not retry or attempts > retries:
            ms = (time.perf_counter() - t0) * 1000
            return Sample(req.tag, status, ms, started, attempts, body if keep_body else b"")
        # What Stripe does with a failed delivery, compressed: try again shortly.
        await asyncio.sleep(min(0.05 * 2**attempts, 1.0))


async def _run(
    base: str,
    deliveries: Sequence[Sequence[Request]],
    concurrency: int,
    *,
    retries: int,
    deadline: float | None,
    keep_body: bool,
    timeout: float,
    progress: dict | None,
) -> list[Sample]:
    samples: list[Sample] = []
    position = 0
    parts = urlsplit(base)
    target = (parts.hostname or "127.0.0.1", parts.port or 80)

    async def sender() -> None:
        nonlocal position
        while position < len(deliveries):
            if deadline is not None and time.monotonic() > deadline:
                return
            delivery = deliveries[position]
            position += 1
            if progress is not None:
                progress["started"] = position
            sends = [
                _send(target, r, retries=retries, keep_body=keep_body, timeout=timeout)
                for r in delivery
            ]
            if len(sends) == 1:
                samples.append(await sends[0])
            else:
                samples.extend(await asyncio.gather(*sends))

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return samples


def _event_loop_run(main: Coroutine[Any, Any, list[Sample]]) -> list[Sample]:
    """`asyncio.run`, on uvloop where it is installed (`.[dev]`): about half the CPU per
    request of asyncio's own loop, which is CPU taken from the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run(
    base: str,
    deliveries: Sequence[Sequence[Request]],
    concurrency: int,
    *,
    retries: int = 0,
    deadline: float | None = None,
    keep_body: bool = False,
    timeout: float = 30.0,
    progress: dict | None = None,
) -> LoadResult:
    """Send every delivery with `concurrency` senders; answers the samples and own CPU.

    `progress["started"]`, if given, counts the deliveries begun (for another thread
    that acts part-way through, such as the storm's kills).
    """
    cpu0, t0 = time.process_time(), time.perf_counter()
    samples = _event_loop_run(
        _run(
            base,
            deliveries,
            concurrency,
            retries=retries,
            deadline=deadline,
            keep_body=keep_body,
            timeout=timeout,
            progress=progress,
        )
    )
    return LoadResult(samples, time.perf_counter() - t0, time.process_time() - cpu0)
