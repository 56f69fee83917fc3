"""Our own small events: what `turns.py` produces from OpenAI's stream and `reply.py` shows in Slack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ToolPhase = Literal["reasoning", "running_python", "drawing_chart"]
# Why an answer stopped early: the output length limit, a content filter, the cap on code runs per
# answer (the API reports no reason for that one; it is seen from the number of runs), or anything else.
StopReason = Literal["length", "content_filter", "tool_limit", "other"]


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's visible text, in order."""

    text: str


@dataclass(frozen=True)
class Progress:
    """The model moved to another phase of its work (shown as the thread status)."""

    phase: ToolPhase


@dataclass(frozen=True)
class StepStarted:
    """A code-interpreter call began running `code` (shown as one step of the answer's timeline)."""

    step_id: str
    code: str


@dataclass(frozen=True)
class StepDone:
    """The code-interpreter call `step_id` ended (`failed` when the call did not complete)."""

    step_id: str
    failed: bool = False


@dataclass(frozen=True)
class FileCited:
    """The answer cites a file the model created in its container."""

    container_id: str
    file_id: str
    filename: str


@dataclass(frozen=True)
class ImageOutput:
    """An image a code-interpreter run displayed (may not be cited in the text)."""

    data: bytes
    container_id: str
    saves_figure: bool = False  # the code that displayed it also saved a figure to a file


@dataclass(frozen=True)
class Usage:
    """Tokens one response used. `cached_input_tokens` are part of `input_tokens` (billed at the cached
    rate) and `reasoning_tokens` part of `output_tokens` (billed as output), as OpenAI reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class TurnDone:
    """The response ended; `incomplete_reason` is set when it stopped early. `code_runs` counts its
    code interpreter calls."""

    response_id: str
    container_ids: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)
    incomplete_reason: StopReason | None = None
    code_runs: int = 0

    def after(self, earlier: TurnDone) -> TurnDone:
        """This response's outcome as the continuation of `earlier` in the same turn: usage, code runs and
        containers add up; the id and stop reason are this response's."""
        usage = Usage(
            input_tokens=earlier.usage.input_tokens + self.usage.input_tokens,
            output_tokens=earlier.usage.output_tokens + self.usage.output_tokens,
            cached_input_tokens=earlier.usage.cached_input_tokens + self.usage.cached_input_tokens,
            reasoning_tokens=earlier.usage.reasoning_tokens + self.usage.reasoning_tokens,
        )
        return TurnDone(
            response_id=self.response_id,
            container_ids=tuple(dict.fromkeys((*earlier.container_ids, *self.container_ids))),
            usage=usage,
            incomplete_reason=self.incomplete_reason,
            code_runs=earlier.code_runs + self.code_runs,
        )


@dataclass(frozen=True)
class FunctionCalled:
    """The model called one of our functions (`name`) with JSON `arguments`; the next request of the turn
    must answer `call_id` with an output."""

    call_id: str
    name: str
    arguments: str


TurnEvent = TextDelta | Progress | StepStarted | StepDone | FileCited | ImageOutput | FunctionCalled | TurnDone
