"""Stage 3 of a turn: the model's response streamed into the thread, its outputs collected."""

from __future__ import annotations

import contextlib

from bot.analysis.turns import TurnRunner
from bot.domain import Turn
from bot.errors import BotError
from bot.events import FileCited, ImageOutput, Progress, StepDone, StepStarted, TextDelta, TurnDone
from bot.i18n import Language, t
from bot.turn.environment import Environment
from bot.turn.outputs import Outputs
from bot.turn.sink import AnswerSink
from bot.turn.steps import step_title

# No status for writing the answer: the streamed text itself shows it (and a status call there
# would delay the first visible text by a round trip).
PHASE_STATUS = {
    "reasoning": "status.thinking",
    "running_python": "status.running_python",
    "drawing_chart": "status.drawing_chart",
}


INCOMPLETE_NOTES = {
    "length": "openai.incomplete_length",
    "tool_limit": "openai.incomplete_tool_limit",
    "content_filter": "openai.incomplete_filter",
}


def incomplete_note(done: TurnDone, lang: Language) -> str | None:
    """The note under an answer that stopped early, naming why; None for a complete answer."""
    if done.incomplete_reason is None:
        return None
    key = INCOMPLETE_NOTES.get(done.incomplete_reason, "openai.incomplete")
    return t(key, lang, reason=done.incomplete_reason, max_runs=done.code_runs)


async def stream_answer(
    *, runner: TurnRunner, reply: AnswerSink, turn: Turn, env: Environment, input_text: str
) -> tuple[TurnDone, Outputs]:
    """Stream one response for `turn` into `reply`; returns how it ended and the files it produced.

    Raises what `TurnRunner.stream` raises (e.g. `ContainerExpired`, for the caller to recover from).
    """
    outputs = Outputs()
    steps: dict[str, str] = {}  # step id -> title, for the running steps shown on the answer stream
    shows_steps = False  # once a step is shown, the timeline replaces the "running Python" status
    stream = runner.stream(
        conversation_id=env.conversation_id,
        container_id=env.container_id,
        input_text=input_text,
        metadata={"slack_channel": turn.thread.channel, "slack_ts": turn.ts},
    )
    # aclosing: a stop or shutdown closes the HTTP stream at once, which ends the response at OpenAI.
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                outputs.text.append(event.text)
                await reply.write(event.text)
            elif isinstance(event, Progress):
                if shows_steps and event.phase != "reasoning":
                    continue  # the step timeline shows it
                await reply.flush()
                await reply.set_status(t(PHASE_STATUS[event.phase], turn.language))
            elif isinstance(event, StepStarted):
                title = step_title(event.code, turn.language)
                await reply.flush()
                if await reply.step(event.step_id, title, status="in_progress"):
                    steps[event.step_id], shows_steps = title, True
            elif isinstance(event, StepDone) and event.step_id in steps:
                status = "error" if event.failed else "complete"
                if not await reply.step(event.step_id, steps.pop(event.step_id), status=status):
                    await reply.set_status(t("status.thinking", turn.language))
            elif isinstance(event, FileCited):
                outputs.cited.append(event)
            elif isinstance(event, ImageOutput):
                outputs.images.append(event)
            elif isinstance(event, TurnDone):
                return event, outputs
    raise BotError("stream ended without TurnDone")
