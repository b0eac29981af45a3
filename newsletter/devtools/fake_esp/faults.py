"""How the fake misbehaves: the fault settings, the script and seeded draws over them, and one
sending request answered with the fault it draws, in its provider's words.

Faults apply to the sending endpoints only (``unauthorized`` to every endpoint of a provider), so
a test can script "the next two batches get 503" without the template calls of ``prepare`` using
up the script. Faults are scripted (``{"next": ["503", "503", "drop"]}``: the next three sending
requests, in order, deterministic) or drawn at seeded rates (``rate_429``, ``rate_500``,
``rate_503``, ``rate_drop``); see :class:`Faults` for each one.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

from newsletter.devtools.fake_esp.asgi import (
    Receive,
    Send,
    collector_paused,
    delayed,
    drain,
    drop,
    read_body,
    respond,
)

if TYPE_CHECKING:
    from newsletter.devtools.fake_esp.app import FakeESP

__all__ = [
    "ACTIONS",
    "MAX_BATCH",
    "SES_STATUSES",
    "Answer",
    "FaultAnswers",
    "FaultScript",
    "Faults",
    "retry_after",
    "send_with_faults",
]

#: What a scripted fault (``Faults.next``) may say for one sending request.
ACTIONS: Final = frozenset({"ok", "401", "429", "500", "503", "drop", "drop_after", "slow"})
#: Postmark's limit of messages per batch: the default of :attr:`Faults.max_batch`.
MAX_BATCH: Final = 500
#: The ``Status`` values of an SES ``BulkEmailEntryResult`` (SES's service model), of which
#: :attr:`Faults.statuses` may give an entry any but ``SUCCESS``.
SES_STATUSES: Final = frozenset(
    {
        "SUCCESS",
        "MESSAGE_REJECTED",
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "CONFIGURATION_SET_NOT_FOUND",
        "TEMPLATE_NOT_FOUND",
        "ACCOUNT_SUSPENDED",
        "ACCOUNT_THROTTLED",
        "ACCOUNT_DAILY_QUOTA_EXCEEDED",
        "INVALID_SENDING_POOL_NAME",
        "ACCOUNT_SENDING_PAUSED",
        "CONFIGURATION_SET_SENDING_PAUSED",
        "INVALID_PARAMETER",
        "TRANSIENT_FAILURE",
        "FAILED",
    }
)


@dataclass
class Faults:
    """How the fake misbehaves. Rates are probabilities per sending request (seeded, so a run
    repeats); ``next`` is a script consumed one entry per sending request before any rate is drawn.
    """

    #: Answer 401 (ErrorCode 10) to every request, as if the token had been revoked.
    unauthorized: bool = False
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    #: Close the connection without any answer, after reading the request (nothing is processed).
    rate_drop: float = 0.0
    #: ``Retry-After`` seconds sent with 429 and 503.
    retry_after: float = 1.0
    #: Seconds every sending request waits before answering (after processing it).
    delay: float = 0.0
    #: Seconds a scripted ``slow`` answer waits (processed and recorded, then answered late).
    slow_seconds: float = 10.0
    #: Scripted answers for the next sending requests, one each: ``ok``, ``401``, ``429``, ``500``,
    #: ``503``, ``drop`` (close, unprocessed), ``drop_after`` (processed, recorded, then close),
    #: ``slow``.
    next: list[str] = field(default_factory=list)
    #: Recipients answered with ErrorCode 406 (inactive) inside a 200 answer.
    inactive: list[str] = field(default_factory=list)
    #: Recipients answered with ErrorCode 300 (invalid email request) inside a 200 answer.
    invalid: list[str] = field(default_factory=list)
    #: SES: recipients whose entry comes back with this ``Status`` inside a 200, e.g.
    #: ``{"a@example.com": "MESSAGE_REJECTED", "b@example.com": "ACCOUNT_THROTTLED"}``.
    statuses: dict[str, str] = field(default_factory=dict)
    seed: int | None = 0
    max_batch: int = MAX_BATCH

    def merged(self, changes: dict[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown names or bad values raise ``ValueError``."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        new = Faults(**{**asdict(self), **changes})
        new.validate()
        return new

    def validate(self) -> None:
        for name in ("rate_429", "rate_500", "rate_503", "rate_drop"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate_429 + self.rate_500 + self.rate_503 + self.rate_drop > 1:
            raise ValueError("the fault rates add up to more than 1")
        bad = [action for action in self.next if action not in ACTIONS]
        if bad:
            raise ValueError(f"unknown scripted answers: {bad}; use {sorted(ACTIONS)}")
        for name in ("delay", "slow_seconds", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not isinstance(self.statuses, dict) or not all(
            isinstance(address, str) and status in SES_STATUSES and status != "SUCCESS"
            for address, status in self.statuses.items()
        ):
            raise ValueError(f"statuses maps addresses to one of {sorted(SES_STATUSES - {'SUCCESS'})}")


class FaultScript:
    """The faults in force, the seeded draw over their rates, and the start-up faults that
    :meth:`reset` restores."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.initial = faults or Faults()
        self.initial.validate()
        self.faults = self.initial.merged({})
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()

    def change(self, changes: dict[str, Any]) -> Faults:
        """Merge ``changes`` into the faults in force (a new ``seed`` restarts the draws)."""
        with self._lock:
            self.faults = self.faults.merged(changes)
            if "seed" in changes:
                self._random = random.Random(self.faults.seed)
            return self.faults

    def reset(self) -> None:
        with self._lock:
            self.faults = self.initial.merged({})
            self._random = random.Random(self.faults.seed)

    def decide(self) -> str:
        """The answer for one sending request: the script first, then the seeded rates."""
        with self._lock:
            faults = self.faults
            if faults.unauthorized:
                return "401"
            if faults.next:
                return faults.next.pop(0)
            draw = self._random.random()
            for action, rate in (
                ("429", faults.rate_429),
                ("500", faults.rate_500),
                ("503", faults.rate_503),
                ("drop", faults.rate_drop),
            ):
                if draw < rate:
                    return action
                draw -= rate
            return "ok"


#: A response as the fault layer writes it: status, body, extra headers (JSON unless they say).
Answer = tuple[int, bytes, dict[str, str] | None]


@dataclass(frozen=True)
class FaultAnswers:
    """How one provider words the injected faults: the one place that knows each provider's
    error bodies and rate-limit headers, so every sending endpoint runs the same fault script."""

    unauthorized: Answer
    rate_limited: Callable[[Faults], Answer]
    failed: Answer
    unavailable: Callable[[Faults], Answer]

    def for_fault(self, action: str, faults: Faults) -> Answer | None:
        """The canned answer for ``action``, or None when the fault is not an error response."""
        if action == "401":
            return self.unauthorized
        if action == "429":
            return self.rate_limited(faults)
        if action == "500":
            return self.failed
        if action == "503":
            return self.unavailable(faults)
        return None


def retry_after(faults: Faults) -> dict[str, str]:
    """The ``Retry-After`` header sent with 429 and 503."""
    value = faults.retry_after
    return {"Retry-After": str(int(value)) if float(value).is_integer() else f"{value:g}"}


async def send_with_faults(
    esp: FakeESP,
    receive: Receive,
    send: Send,
    answers: FaultAnswers,
    answer: Callable[[bytes], Answer],
) -> None:
    """One sending request, after its provider's authentication: the next fault, if any,
    answered in the provider's words (``answers``), else the provider's answer to the body.

    ``drop`` reads the request and closes the connection without a status line (nothing is
    processed); ``drop_after`` processes the body (the messages count as sent) and then closes:
    the client cannot tell whether anything was sent. Reading the body first matters: closing a
    socket with unread data sends a reset, which the client may see while still writing, i.e. as
    a request that never left.
    """
    esp.count("send_requests")
    action = esp.script.decide()
    if action != "ok":
        esp.count(f"fault_{action}")
    faults = esp.faults
    canned = answers.for_fault(action, faults)
    if canned is not None:
        await drain(receive)
        await respond(send, *canned)
        return
    if action == "drop":
        await drain(receive)
        await drop(send)
        return
    body = await read_body(receive)
    if body is None:
        return  # the client went away before the whole request arrived: nothing to answer
    with collector_paused():
        status, data, headers = answer(body)
    if action == "drop_after":
        await drop(send)
        return
    wait = faults.delay + (faults.slow_seconds if action == "slow" else 0.0)
    await respond(delayed(send, wait) if wait else send, status, data, headers)
