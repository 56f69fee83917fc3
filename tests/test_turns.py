"""TurnRunner against the loopback fake OpenAI: events in order, idle timeout, errors converted."""

from __future__ import annotations

import openai
import pytest

from bot.analysis.turns import MAX_TOOL_CALLS, TurnRunner, stop_reason
from bot.errors import OpenAIQuotaExhausted, OpenAIUnavailable
from bot.events import Progress, TextDelta, TurnDone
from tests.fakes.openai_fake import FakeOpenAI, Script


async def setup(oai: FakeOpenAI) -> tuple[openai.AsyncOpenAI, str, str]:
    client = openai.AsyncOpenAI(base_url=oai.base_url, api_key=oai.api_key, max_retries=0)
    conversation = await client.conversations.create()
    container = await client.containers.create(name="t")
    return client, conversation.id, container.id


async def test_events_arrive_in_order_and_end_with_turn_done(oai: FakeOpenAI) -> None:
    client, conversation_id, container_id = await setup(oai)
    oai.scripts.append(Script(text="hello world, this is a longer answer", code="1+1"))
    runner = TurnRunner(client, model="m", instructions="i")
    events = [
        e async for e in runner.stream(conversation_id=conversation_id, container_id=container_id, input_text="q")
    ]
    await client.close()
    assert isinstance(events[-1], TurnDone) and events[-1].container_ids == (container_id,)
    assert Progress("running_python") in events
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "hello world, this is a longer answer"


async def test_idle_stream_times_out_but_a_slow_steady_one_does_not(oai: FakeOpenAI) -> None:
    client, conversation_id, container_id = await setup(oai)
    runner = TurnRunner(client, model="m", instructions="i", idle_timeout_s=0.3)
    oai.scripts.append(Script(text="x" * 200, delay_s=0.05))  # 2 s in total, never 0.3 s without an event
    events = [
        e async for e in runner.stream(conversation_id=conversation_id, container_id=container_id, input_text="q")
    ]
    assert isinstance(events[-1], TurnDone)
    oai.scripts.append(Script(text="stalls", delay_s=0.6))
    with pytest.raises(OpenAIUnavailable, match="no event for"):
        async for _ in runner.stream(conversation_id=conversation_id, container_id=container_id, input_text="q"):
            pass
    await client.close()


async def test_quota_error_is_not_retried(oai: FakeOpenAI) -> None:
    client, conversation_id, container_id = await setup(oai)
    oai.fail_next("/v1/responses", status=429, code="insufficient_quota", message="quota", times=5)
    runner = TurnRunner(client, model="m", instructions="i", transient_retry_delays_s=(0.01, 0.01))
    with pytest.raises(OpenAIQuotaExhausted) as info:
        async for _ in runner.stream(conversation_id=conversation_id, container_id=container_id, input_text="q"):
            pass
    await client.close()
    assert info.value.request_id and info.value.request_id.startswith("req_")
    assert len(oai.requests_to("POST", "/v1/responses")) == 1


class _Details:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason


@pytest.mark.parametrize(
    ("kind", "details", "code_runs", "expected"),
    [
        pytest.param("response.completed", None, 0, None, id="completed"),
        pytest.param("response.completed", None, MAX_TOOL_CALLS - 1, None, id="completed-below-the-cap"),
        pytest.param("response.completed", None, MAX_TOOL_CALLS, "tool_limit", id="completed-at-the-cap"),
        pytest.param("response.incomplete", _Details("max_output_tokens"), 0, "length", id="length"),
        pytest.param("response.incomplete", _Details("max_output_tokens"), MAX_TOOL_CALLS, "length", id="length-wins"),
        pytest.param("response.incomplete", _Details("content_filter"), 1, "content_filter", id="content-filter"),
        pytest.param("response.incomplete", _Details("max_messages"), 0, "other", id="unknown-reason"),
        pytest.param("response.incomplete", None, 0, "other", id="no-details"),
    ],
)
def test_stop_reason(kind: str, details: _Details | None, code_runs: int, expected: str | None) -> None:
    assert stop_reason(kind, details, code_runs=code_runs) == expected


async def test_a_function_call_left_unanswered_by_an_interrupted_turn_does_not_block_the_next(
    oai: FakeOpenAI,
) -> None:
    from bot.turn.charts import CHART_TOOL
    from tests.fakes.openai_fake import FunctionCall

    client, conversation_id, container_id = await setup(oai)
    runner = TurnRunner(client, model="m", instructions="i")
    oai.scripts.append(Script(text="", function_calls=[FunctionCall("slack_chart", '{"charts": []}')]))
    first = [
        e
        async for e in runner.stream(
            conversation_id=conversation_id, container_id=container_id, input_text="chart it", functions=[CHART_TOOL]
        )
    ]
    (call,) = [e for e in first if type(e).__name__ == "FunctionCalled"]
    # The turn is stopped here: its call is never answered. The thread's next question still gets an answer.
    oai.scripts.append(Script(text="the next answer"))
    second = [
        e
        async for e in runner.stream(
            conversation_id=conversation_id, container_id=container_id, input_text="next", functions=[CHART_TOOL]
        )
    ]
    await client.close()
    assert isinstance(second[-1], TurnDone)
    assert "".join(e.text for e in second if isinstance(e, TextDelta)) == "the next answer"
    posts = oai.requests_to("POST", "/v1/responses")
    refused, answered = posts[-2].json["input"], posts[-1].json["input"]
    assert [item.get("type") for item in refused] == [None], "first tried as it was, and refused"
    assert answered[0]["type"] == "function_call_output" and answered[0]["call_id"] == call.call_id
    assert answered[1]["content"][0]["text"] == "next"
