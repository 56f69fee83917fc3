"""The process's Prometheus metrics, in a registry of its own (not prometheus_client's global one).

Each bot builds one `Metrics`; `serve()` makes it the current one with `use(...)` for its task and
every task started from it (a `contextvars.ContextVar`), so the stages that count call `current()`
without it being threaded through every constructor, and two bots in one test process keep their
own counts. Outside a serving bot `current()` returns a registry that nobody exposes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "slack_analyst"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: Slack's ack budget is 3 s; answers take from seconds to minutes.
ACK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
TURN_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The metrics named in the README ("Operating it"), all prefixed `slack_analyst_`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turns = Counter(f"{PREFIX}_turns", "Turns finished, by outcome", ["outcome"], registry=r)
        self.turn_duration = Histogram(
            f"{PREFIX}_turn_duration_seconds", "Time to answer a turn", buckets=TURN_BUCKETS_S, registry=r
        )
        self.first_text = Histogram(
            f"{PREFIX}_first_text_seconds",
            "Question accepted -> first answer text visible in Slack",
            buckets=TURN_BUCKETS_S,
            registry=r,
        )
        self.ack = Histogram(
            f"{PREFIX}_ack_seconds", "Event received -> Slack acknowledged", buckets=ACK_BUCKETS_S, registry=r
        )
        self.turns_in_progress = Gauge(f"{PREFIX}_turns_in_progress", "Turns running now", registry=r)
        self.turns_waiting = Gauge(f"{PREFIX}_turns_waiting", "Turns queued but not started", registry=r)
        self.openai_tokens = Counter(f"{PREFIX}_openai_tokens", "OpenAI tokens used, by kind", ["kind"], registry=r)
        self.files = Counter(
            f"{PREFIX}_files", "Files shared with the bot: taken, or refused_<reason>", ["result"], registry=r
        )
        self.slack_api_errors = Counter(
            f"{PREFIX}_slack_api_errors", "Slack Web API calls that failed", ["method", "error"], registry=r
        )
        self.openai_errors = Counter(
            f"{PREFIX}_openai_errors", "OpenAI errors, by code (or type, or connection)", ["code"], registry=r
        )

    def track_turns(self, *, in_progress: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Read the two turn gauges from the scheduler at scrape time."""
        self.turns_in_progress.set_function(in_progress)
        self.turns_waiting.set_function(waiting)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


_unexposed = Metrics()
_current: contextvars.ContextVar[Metrics] = contextvars.ContextVar("slack_analyst_metrics", default=_unexposed)


def current() -> Metrics:
    """The serving bot's metrics (see the module docstring)."""
    return _current.get()


def use(metrics: Metrics) -> None:
    """Make `metrics` current for this task and the tasks it starts from now on."""
    _current.set(metrics)
