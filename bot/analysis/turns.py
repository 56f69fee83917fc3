"""One turn against the Responses API: request, stream, and OpenAI's events turned into ours."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import openai

from bot.analysis.openai_errors import convert, is_conversation_locked, stream_error, unanswered_function_call
from bot.errors import OpenAIBusy, OpenAIRateLimited, OpenAIUnavailable
from bot.events import (
    FileCited,
    FunctionCalled,
    ImageOutput,
    Progress,
    StepDone,
    StepStarted,
    StopReason,
    TextDelta,
    TurnDone,
    TurnEvent,
    Usage,
)
from bot.ops.logging import set_openai_request_id

log = logging.getLogger(__name__)

# Back-off while another response holds the conversation (HTTP 400 conversation_locked).
LOCK_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
# Back-off for transient failures (429 rate_limit_exceeded, 5xx, network) before any text is shown;
# insufficient_quota, auth and validation errors are never retried.
TRANSIENT_RETRY_DELAYS_S: tuple[float, ...] = (1.0, 3.0, 8.0)
MAX_RETRY_AFTER_S = 30.0
# No event for this long means the stream is dead; a working analysis keeps sending events.
IDLE_TIMEOUT_S = 300.0
MAX_TOOL_CALLS = 12
# A function call left unanswered by an interrupted turn (stop, restart) is answered with this before the
# next request; at most this many per request.
INTERRUPTED_CALL = '{"ok": false, "error": "The turn was interrupted before this call was carried out."}'
MAX_LATE_CALL_OUTPUTS = 5
# OpenAI's `incomplete_details.reason` -> ours.
INCOMPLETE_REASONS: dict[str, StopReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}


class TurnRunner:
    """Sends one user turn to a conversation and yields `TurnEvent`s as the response streams."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        instructions: str,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        lock_retry_delays_s: Sequence[float] = LOCK_RETRY_DELAYS_S,
        transient_retry_delays_s: Sequence[float] = TRANSIENT_RETRY_DELAYS_S,
    ) -> None:
        # Retries are ours (see `_open`): the SDK would also retry insufficient_quota 429s.
        self._client = client.with_options(max_retries=0)
        self._transient_delays_s = tuple(transient_retry_delays_s)
        self._model = model
        self._instructions = instructions
        self._idle_timeout_s = idle_timeout_s
        self._lock_retry_delays_s = tuple(lock_retry_delays_s)

    @property
    def model(self) -> str:
        return self._model

    async def stream(
        self,
        *,
        conversation_id: str,
        container_id: str | None,
        input_text: str | None,
        metadata: dict[str, str] | None = None,
        functions: Sequence[dict[str, Any]] = (),
        function_outputs: Sequence[tuple[str, str]] = (),
        allow_tools: bool = True,
    ) -> AsyncGenerator[TurnEvent, None]:
        """Yield the turn's events; the last one is `TurnDone`. Close it (`aclose`) to end the response.

        With `container_id` None (a thread that holds no file) the response has no code interpreter
        tool, so OpenAI starts no container and bills no container time. `functions` are function tools
        (`{"type": "function", "name", "description", "parameters"}`) offered beside it; each call of one
        is yielded as `FunctionCalled` once its arguments are complete. `function_outputs` answers the
        previous response's calls (`(call_id, output)`), sent before `input_text` (None: no user message).
        `allow_tools=False` asks for a text answer (tool_choice "none"), e.g. after too many calls.

        Raises `ContainerExpired` (the caller replaces the container and calls again), `OpenAIBusy`
        when the conversation stayed locked, `ResponseFailed`, or another `OpenAIProblem`.
        """
        items: list[dict[str, Any]] = [
            {"type": "function_call_output", "call_id": call_id, "output": output}
            for call_id, output in function_outputs
        ]
        if input_text is not None:
            items.append({"role": "user", "content": [{"type": "input_text", "text": input_text}]})
        options = _tool_options(container_id, functions)
        if not allow_tools and options:
            options["tool_choice"] = "none"
        stream = await self._open(conversation_id, items, options, metadata or {})
        request_id = _request_id(stream)
        set_openai_request_id(request_id)
        try:
            async for event in self._events(stream, request_id):
                yield event
        finally:
            await stream.close()

    async def _open(
        self, conversation_id: str, items: list[dict[str, Any]], options: dict[str, Any], metadata: dict[str, str]
    ) -> Any:
        delays = iter(self._lock_retry_delays_s)
        transient_delays = iter(self._transient_delays_s)
        answered_late = 0
        while True:
            try:
                return await self._client.responses.create(
                    model=self._model,
                    instructions=self._instructions,
                    conversation=conversation_id,
                    input=items,  # type: ignore[arg-type]
                    **options,
                    store=True,
                    stream=True,
                    metadata=metadata,
                )
            except openai.OpenAIError as exc:
                call_id = unanswered_function_call(exc)
                if call_id is not None and answered_late < MAX_LATE_CALL_OUTPUTS:
                    # A call an earlier, interrupted turn never answered blocks the conversation: answer it
                    # now (as not carried out) and send this turn's input after it.
                    log.info(
                        "conversation %s has an unanswered call %s; answering it as interrupted",
                        conversation_id,
                        call_id,
                    )
                    answered_late += 1
                    items = [{"type": "function_call_output", "call_id": call_id, "output": INTERRUPTED_CALL}, *items]
                    continue
                if is_conversation_locked(exc):
                    delay = next(delays, None)
                    if delay is not None:
                        log.info("conversation %s locked; retrying in %.1fs", conversation_id, delay)
                        await asyncio.sleep(delay)
                        continue
                    raise OpenAIBusy(str(exc), request_id=getattr(exc, "request_id", None)) from exc
                error = convert(exc)
                if isinstance(error, OpenAIRateLimited | OpenAIUnavailable):
                    delay = next(transient_delays, None)
                    if delay is not None:
                        delay = _retry_after_s(exc) or delay
                        log.info("%s (request %s); retrying in %.1fs", error.detail, error.request_id, delay)
                        await asyncio.sleep(delay)
                        continue
                raise error from exc

    async def _events(self, stream: Any, request_id: str | None) -> AsyncIterator[TurnEvent]:
        iterator = stream.__aiter__()
        container_ids: list[str] = []
        while True:
            try:
                event = await asyncio.wait_for(iterator.__anext__(), self._idle_timeout_s)
            except StopAsyncIteration:
                raise OpenAIUnavailable("stream ended without a terminal event", request_id=request_id) from None
            except TimeoutError:
                raise OpenAIUnavailable(f"no event for {self._idle_timeout_s:.0f}s", request_id=request_id) from None
            except openai.OpenAIError as exc:
                raise convert(exc) from exc
            kind = event.type
            if kind == "response.output_text.delta":
                yield TextDelta(event.delta)
            elif kind == "response.output_item.added":
                phase = {"code_interpreter_call": "running_python", "reasoning": "reasoning"}
                if event.item.type in phase:
                    yield Progress(phase[event.item.type])  # type: ignore[arg-type]
            elif kind == "response.code_interpreter_call_code.done":
                if _draws_chart(event.code or ""):
                    yield Progress("drawing_chart")
                yield StepStarted(step_id=str(event.item_id), code=event.code or "")
            elif kind == "response.output_item.done" and event.item.type == "function_call":
                item = event.item
                yield FunctionCalled(call_id=item.call_id, name=item.name, arguments=item.arguments or "")
            elif kind == "response.output_item.done" and event.item.type == "code_interpreter_call":
                item = event.item
                yield StepDone(step_id=str(item.id), failed=item.status in ("failed", "incomplete"))
                if item.container_id and item.container_id not in container_ids:
                    container_ids.append(item.container_id)
                saves = "savefig(" in (item.code or "")
                for output in item.outputs or []:
                    if output.type == "image" and (data := _data_url_bytes(output.url)) is not None:
                        yield ImageOutput(data=data, container_id=item.container_id, saves_figure=saves)
            elif kind == "response.output_text.annotation.added":
                annotation = _as_dict(event.annotation)
                if annotation.get("type") == "container_file_citation":
                    yield FileCited(
                        container_id=str(annotation["container_id"]),
                        file_id=str(annotation["file_id"]),
                        filename=str(annotation.get("filename") or annotation["file_id"]),
                    )
            elif kind in ("response.completed", "response.incomplete"):
                response = event.response
                usage = _usage(response.usage)
                code_runs = sum(1 for item in response.output or [] if item.type == "code_interpreter_call")
                reason = stop_reason(kind, response.incomplete_details, code_runs=code_runs)
                if reason is not None:
                    log.info("response %s stopped early (%s, %d code runs)", response.id, reason, code_runs)
                yield TurnDone(
                    response_id=response.id,
                    container_ids=tuple(container_ids),
                    usage=usage,
                    incomplete_reason=reason,
                    code_runs=code_runs,
                )
                return
            elif kind == "response.failed":
                error = event.response.error
                raise stream_error(
                    error.code if error else None,
                    error.message if error else "response failed",
                    request_id=request_id,
                    response_id=event.response.id,
                )
            elif kind == "error":
                raise stream_error(
                    getattr(event, "code", None), str(getattr(event, "message", "") or ""), request_id=request_id
                )


def _tool_options(container_id: str | None, functions: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The code interpreter in `container_id`, with its outputs and the cap on its runs, and `functions`;
    nothing at all without either (`include` and `max_tool_calls` only concern tool calls)."""
    options: dict[str, Any] = {}
    tools: list[dict[str, Any]] = []
    if container_id is not None:
        tools.append({"type": "code_interpreter", "container": container_id})
        options["include"] = ["code_interpreter_call.outputs"]
        options["max_tool_calls"] = MAX_TOOL_CALLS
    tools.extend(functions)
    if tools:
        options["tools"] = tools
        options["tool_choice"] = "auto"
    return options


def stop_reason(kind: str, details: Any, *, code_runs: int) -> StopReason | None:
    """Why a response that ended with event `kind` stopped early, or None if it did not.

    OpenAI names length and content-filter stops in `incomplete_details.reason`; a response that hit
    `max_tool_calls` reports nothing special (further tool calls are silently ignored), so that case
    is recognised by the response having used all `MAX_TOOL_CALLS` code runs.
    """
    if kind == "response.incomplete":
        return INCOMPLETE_REASONS.get(str(getattr(details, "reason", None)), "other")
    if code_runs >= MAX_TOOL_CALLS:
        return "tool_limit"
    return None


def _usage(usage: Any) -> Usage:
    """OpenAI's `ResponseUsage` (which may be missing, as may its details) as our `Usage`."""
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=getattr(usage, "input_tokens", 0) or 0,
        output_tokens=getattr(usage, "output_tokens", 0) or 0,
        cached_input_tokens=getattr(input_details, "cached_tokens", 0) or 0,
        reasoning_tokens=getattr(output_details, "reasoning_tokens", 0) or 0,
    )


def _draws_chart(code: str) -> bool:
    return any(marker in code for marker in ("plt.", "matplotlib", "seaborn", "sns.", ".plot("))


def _retry_after_s(exc: openai.OpenAIError) -> float:
    """The server's requested wait (retry-after-ms / retry-after), capped; 0 when absent."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return 0.0
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return min(float(raw) * scale, MAX_RETRY_AFTER_S)
        except ValueError:
            continue
    return 0.0


def _request_id(stream: Any) -> str | None:
    response = getattr(stream, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get("x-request-id") if headers is not None else None


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None)
    return dump() if callable(dump) else {}


def _data_url_bytes(url: str) -> bytes | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=False)
    except ValueError:
        return None
