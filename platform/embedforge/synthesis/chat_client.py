"""A well-behaved client of a shared OpenAI-compatible chat endpoint, as a Ray Data stage.

:class:`ChatClient` is a Ray Data callable class with an async ``__call__``. One actor runs
several batches at once (Ray Data's async UDF machinery plus ``max_concurrency`` on the
actor), and one semaphore caps the requests in flight across all of them
(``max_in_flight``), so a slow endpoint is kept busy without being flooded.

Each request is retried on 408, 429, 5xx, timeouts and connection errors, up to
``max_retries`` times, after a full-jitter exponential backoff (a uniform wait in
``[0, min(max_wait, base * 2**retry)]``); a ``Retry-After`` header (seconds or an HTTP date)
is a floor on that wait. Other 4xx answers are final. Nothing raises: every row ends with
an ``outcome``, and a failed row has ``generated_text=""``, which the record step rejects.

The request budget (``max_requests``, every HTTP attempt counts) is shared by all actors of
both generation steps of a run through one small named actor, :class:`RequestBudget`, that
hands out permits in blocks of ``max_in_flight``; a client asks for a new block only when
its own is spent, and gives back what it holds whenever it has no batch left to work on.
The run therefore never sends more than ``max_requests`` requests; when the budget is
gone, rows still waiting end as ``budget_exhausted``. While actors run side by side, a
row may end so while another actor still holds part of a block (at most one block each).

Per-row columns, on top of the engine interface (``generated_text``, ``attempts``):

- ``outcome``: ``ok``, ``skipped`` (empty prompt, no request), ``http_<status>`` (a final
  4xx), ``retries_exhausted``, ``budget_exhausted`` or ``bad_response`` (a 200 whose body
  is not JSON).
- ``request_log``: one token per attempt (the HTTP status, ``timeout`` or
  ``connection_error``) and ``=<outcome>`` per step, appended to the row's earlier log so
  the log of a record holds both steps. :func:`request_counts` sums logs for the report.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

RETRYABLE_TOKENS = {"408", "429", "timeout", "connection_error"}
"""Attempt results worth another try, besides every 5xx."""

TASKS_PER_ACTOR = 4
"""Ray Data tasks an actor runs at once (each runs up to four batches): with async batches
they share one event loop, so the semaphore, not this, bounds the requests in flight."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before trying a request again."""

    max_retries: int
    base_wait_s: float
    max_wait_s: float


def retryable(token: str) -> bool:
    return token in RETRYABLE_TOKENS or token.startswith("5")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (unix time); ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_seconds(policy: RetryPolicy, retry: int, retry_after: float | None, rng: random.Random) -> float:
    """The wait before retry number ``retry`` (0-based): full jitter, never less than ``Retry-After``."""
    jitter = rng.uniform(0.0, min(policy.max_wait_s, policy.base_wait_s * 2**retry))
    return jitter if retry_after is None else max(retry_after, jitter)


def request_counts(logs: Iterable[str | None]) -> dict[str, int]:
    """Sum request logs: requests sent, retries, 429s, 5xx, timeouts, and each outcome."""
    counts: Counter = Counter()
    for log in logs:
        sent_this_step = 0
        for token in (log or "").split():
            if token.startswith("="):
                counts[f"outcome {token[1:]}"] += 1
                counts["retries"] += max(0, sent_this_step - 1)
                sent_this_step = 0
                continue
            sent_this_step += 1
            counts["requests sent"] += 1
            if token == "429":
                counts["http 429"] += 1
            elif token.startswith("5"):
                counts["http 5xx"] += 1
            elif token in ("timeout", "connection_error"):
                counts[f"{token}s"] += 1
    order = ["requests sent", "retries", "http 429", "http 5xx", "timeouts", "connection_errors"]
    return {key: counts[key] for key in order} | {key: counts[key] for key in sorted(counts) if key not in order}


class RequestBudget:
    """A run's request budget, as a Ray actor: hands out permits until ``total`` are gone."""

    def __init__(self, total: int):
        self.left = total

    def take(self, wanted: int) -> int:
        granted = min(wanted, self.left)
        self.left -= granted
        return granted

    def give_back(self, unused: int) -> None:
        self.left += unused


def request_budget(total: int | None, name: str):
    """The run's :class:`RequestBudget` actor (created on first use), or ``None`` for no budget."""
    if total is None:
        return None
    import ray

    return ray.remote(RequestBudget).options(name=name, get_if_exists=True, num_cpus=0).remote(total)


class Permits:
    """A client's share of the run budget, refilled from the :class:`RequestBudget` in blocks."""

    def __init__(self, budget, block: int):
        self.budget, self.block, self.local = budget, block, 0
        self.lock: asyncio.Lock | None = None

    async def take(self) -> bool:
        if self.budget is None:
            return True
        self.lock = self.lock or asyncio.Lock()
        async with self.lock:
            if self.local == 0:
                self.local = await self.budget.take.remote(self.block)
            if self.local == 0:
                return False
            self.local -= 1
            return True

    async def give_back(self) -> None:
        """Return the permits this client holds, so other actors (or the next step) can use them."""
        if self.budget is None or self.local == 0:
            return
        async with self.lock:
            unused, self.local = self.local, 0
            await self.budget.give_back.remote(unused)


@dataclass
class Result:
    text: str
    attempts: int
    outcome: str
    log: str


class ChatClient:
    """Ray Data callable class: one chat-completions request per row, with retries and a budget.

    ``payload_of(row)`` builds the request body and ``text_of(json)`` reads the answer, so
    this class knows HTTP and nothing about prompts.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        payload_of: Callable[[dict], dict],
        text_of: Callable[[Any], str],
        policy: RetryPolicy,
        max_in_flight: int,
        timeout_s: float,
        budget=None,
        qps: float | None = None,
    ):
        self.url, self.headers, self.payload_of, self.text_of = url, headers, payload_of, text_of
        self.policy, self.max_in_flight, self.timeout_s, self.qps = policy, max_in_flight, timeout_s, qps
        self.permits = Permits(budget, block=max_in_flight)
        self.rng = random.Random()
        self.session = None
        self.in_flight: asyncio.Semaphore | None = None
        self.pace_lock: asyncio.Lock | None = None
        self.next_start = 0.0
        self.batches = 0

    async def start(self) -> None:
        """Create the session and semaphore on the event loop that runs the batches."""
        import aiohttp

        if self.session is None:
            self.in_flight, self.pace_lock = asyncio.Semaphore(self.max_in_flight), asyncio.Lock()
            connector = aiohttp.TCPConnector(limit=self.max_in_flight)
            self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def pace(self) -> None:
        """Start at most ``qps`` requests a second from this actor (no limit when ``None``)."""
        if not self.qps:
            return
        loop = asyncio.get_running_loop()
        async with self.pace_lock:
            now = loop.time()
            start, self.next_start = max(now, self.next_start), max(now, self.next_start) + 1.0 / self.qps
        await asyncio.sleep(start - now)

    async def post(self, payload: dict) -> tuple[str, Any, float | None]:
        """One attempt: ``(token, json body or None, Retry-After seconds or None)``."""
        import aiohttp

        await self.pace()
        try:
            async with self.in_flight, self.session.post(self.url, json=payload, headers=self.headers) as response:
                token = str(response.status)
                if response.status != 200:
                    await response.read()
                    return token, None, retry_after_seconds(response.headers.get("Retry-After"))
                try:
                    return token, await response.json(content_type=None), None
                except ValueError:
                    return token, None, None
        except asyncio.TimeoutError:
            return "timeout", None, None
        except aiohttp.ClientError:
            return "connection_error", None, None

    async def generate(self, row: dict) -> Result:
        if not row.get("prompt"):
            return Result("", 0, "skipped", "")
        payload, log = self.payload_of(row), []
        for retry in range(self.policy.max_retries + 1):
            if not await self.permits.take():
                return Result("", len(log), "budget_exhausted", " ".join(log + ["=budget_exhausted"]))
            token, body, retry_after = await self.post(payload)
            log.append(token)
            if token == "200":
                outcome = "ok" if body is not None else "bad_response"
                return Result(self.text_of(body) if body is not None else "", len(log), outcome, " ".join(log + [f"={outcome}"]))
            if not retryable(token):
                return Result("", len(log), f"http_{token}", " ".join(log + [f"=http_{token}"]))
            if retry < self.policy.max_retries:
                await asyncio.sleep(backoff_seconds(self.policy, retry, retry_after, self.rng))
        return Result("", len(log), "retries_exhausted", " ".join(log + ["=retries_exhausted"]))

    async def __call__(self, batch):
        await self.start()
        rows = batch.to_dict("records")
        self.batches += 1
        try:
            results = await asyncio.gather(*(self.generate(row) for row in rows))
        finally:
            self.batches -= 1
            if self.batches == 0:
                await self.permits.give_back()
        earlier = [str(row.get("request_log") or "") for row in rows]
        batch = batch.copy()
        batch["generated_text"] = [r.text for r in results]
        batch["attempts"] = [r.attempts for r in results]
        batch["outcome"] = [r.outcome for r in results]
        batch["request_log"] = [f"{before} {r.log}".strip() for before, r in zip(earlier, results)]
        return batch
