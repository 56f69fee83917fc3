"""Stage 3 of a turn: the model's response streamed into the thread, its outputs collected."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bot.analysis.turns import TurnRunner
from bot.domain import ThreadFile, ThreadKey, Turn
from bot.errors import BotError, ContainerExpired
from bot.events import FileCited, FunctionCalled, ImageOutput, Progress, StepDone, StepStarted, TextDelta, TurnDone
from bot.i18n import Language, t
from bot.turn.charts import CHART_TOOL, MAX_CHART_ROUNDS, answer_call
from bot.turn.environment import Environment, Environments
from bot.turn.outputs import Outputs
from bot.turn.prompt import turn_input
from bot.turn.sink import AnswerSink
from bot.turn.steps import step_title

log = logging.getLogger(__name__)

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


async def answer_recovering(
    *,
    runner: TurnRunner,
    environments: Environments,
    reply: AnswerSink,
    turn: Turn,
    thread: ThreadKey,
    files: Sequence[ThreadFile],
    new_ids: set[str],
    env: Environment,
) -> tuple[TurnDone, Outputs, int]:
    """`stream_answer`, recovering from a container that died before any text was shown: first with a new
    container, then (the conversation's history still pointing at the dead one) with a fresh conversation
    that carries the memory over as text. Returns the answer, its outputs and how many containers it created.

    Raises `ContainerExpired` when text was already shown or recovery did not help.
    """
    created = 0
    for attempt in range(3):
        try:
            input_text = turn_input(
                turn, files, new_ids=new_ids, paths=env.paths, reset=env.reset, font_path=env.font_path
            )
            done, outputs = await stream_answer(runner=runner, reply=reply, turn=turn, env=env, input_text=input_text)
            return done, outputs, created
        except ContainerExpired:
            if reply.has_text or attempt == 2:
                raise
            if not env.reset:
                log.info("container %s expired mid-turn; starting a new one", env.container_id)
                container_id, paths, font_path = await environments.new_container(thread, files)
                created += 1
                env = replace(env, container_id=container_id, reset=True, paths=paths, font_path=font_path)
            else:
                log.info("conversation %s refers to a dead container; continuing in a new one", env.conversation_id)
                conversation_id = await environments.fresh_conversation(thread, env.conversation_id)
                env = replace(env, conversation_id=conversation_id)
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class _Steps:
    """The code steps shown on the answer (a timeline in Slack), across the turn's responses."""

    running: dict[str, str] = field(default_factory=dict)  # step id -> title
    shown: bool = False  # once a step is shown, the timeline replaces the "running Python" status
    refused: bool = False  # the sink cannot show steps: the status line shows code runs instead


async def stream_answer(
    *, runner: TurnRunner, reply: AnswerSink, turn: Turn, env: Environment, input_text: str
) -> tuple[TurnDone, Outputs]:
    """Stream `turn`'s answer into `reply`; returns how it ended and the files it produced.

    A response that calls `slack_chart` ends there: the charts are posted, and a follow-up response on
    the same conversation gets the calls' outputs and continues the answer (at most `MAX_CHART_ROUNDS`
    rounds; the last is asked to answer in text). The returned `TurnDone` adds up all of them.

    Raises what `TurnRunner.stream` raises (e.g. `ContainerExpired`, for the caller to recover from).
    """
    outputs = Outputs()
    steps = _Steps()
    done: TurnDone | None = None
    function_outputs: list[tuple[str, str]] = []
    text: str | None = input_text
    for round_ in range(MAX_CHART_ROUNDS + 1):
        calls: list[FunctionCalled] = []
        latest = await _one_response(
            runner=runner,
            reply=reply,
            turn=turn,
            env=env,
            input_text=text,
            function_outputs=function_outputs,
            allow_tools=round_ < MAX_CHART_ROUNDS,
            outputs=outputs,
            steps=steps,
            calls=calls,
        )
        done = latest if done is None else latest.after(done)
        if not calls:
            return done, outputs
        function_outputs = [(call.call_id, await answer_call(call, reply)) for call in calls]
        text = None
    assert done is not None
    return done, outputs


async def _one_response(
    *,
    runner: TurnRunner,
    reply: AnswerSink,
    turn: Turn,
    env: Environment,
    input_text: str | None,
    function_outputs: list[tuple[str, str]],
    allow_tools: bool,
    outputs: Outputs,
    steps: _Steps,
    calls: list[FunctionCalled],
) -> TurnDone:
    stream = runner.stream(
        conversation_id=env.conversation_id,
        container_id=env.container_id,
        input_text=input_text,
        metadata={"slack_channel": turn.thread.channel, "slack_ts": turn.ts},
        functions=[CHART_TOOL],
        function_outputs=function_outputs,
        allow_tools=allow_tools,
    )
    # aclosing: a stop or shutdown closes the HTTP stream at once, which ends the response at OpenAI.
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                outputs.text.append(event.text)
                await reply.write(event.text)
            elif isinstance(event, Progress):
                if steps.shown and event.phase != "reasoning":
                    continue  # the step timeline shows it
                if event.phase == "reasoning" or steps.refused:
                    # No step call will carry the text held back: show it before what may be a long wait.
                    await reply.flush()
                await reply.set_status(t(PHASE_STATUS[event.phase], turn.language))
            elif isinstance(event, StepStarted):
                title = step_title(event.code, turn.language)
                # The step's call carries the text held back, above the step, before the code runs.
                if await reply.step(event.step_id, title, status="in_progress"):
                    steps.running[event.step_id], steps.shown = title, True
                else:
                    steps.refused = True
                    await reply.flush()
            elif isinstance(event, StepDone) and event.step_id in steps.running:
                status = "error" if event.failed else "complete"
                if not await reply.step(event.step_id, steps.running.pop(event.step_id), status=status):
                    steps.refused = True
                    await reply.flush()
                    await reply.set_status(t("status.thinking", turn.language))
            elif isinstance(event, FileCited):
                outputs.cited.append(event)
            elif isinstance(event, ImageOutput):
                outputs.images.append(event)
            elif isinstance(event, FunctionCalled):
                calls.append(event)
            elif isinstance(event, TurnDone):
                return event
    raise BotError("stream ended without TurnDone")
