"""Self-test of the fake OpenAI server, driven by the real `openai.AsyncOpenAI` client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import FileObject
from openai.types.containers import FileRetrieveResponse
from openai.types.conversations import Conversation, ConversationItem
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.openai_fake import FakeOpenAI, FunctionCall, GeneratedFile, Script

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
CSV = b"region,sales\nnorth,10\nsouth,7\n"
MODEL = "gpt-5.1"


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def client(oai: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=oai.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


async def _session(client: AsyncOpenAI) -> tuple[str, str, str]:
    """Upload sales.csv, open a conversation and a container holding the file."""
    uploaded = await client.files.create(file=("sales.csv", CSV, "text/csv"), purpose="user_data")
    conversation = await client.conversations.create(metadata={"slack_thread_ts": "1732.0001"})
    container = await client.containers.create(name="slack-C1-1732.0001", file_ids=[uploaded.id])
    return uploaded.id, conversation.id, container.id


def _code_script(**overrides: object) -> Script:
    values: dict = {
        "text": "North grew fastest, by 43 percent over the quarter.",
        "code": "import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\ndf.plot().figure.savefig('chart.png')",
        "logs": "   region  sales\n0  north     10",
        "files": [GeneratedFile("chart.png", PNG), GeneratedFile("scratch.txt", b"x", cite=False)],
        "image_outputs": [PNG],
        "reasoning": True,
    }
    values.update(overrides)
    return Script(**values)  # type: ignore[arg-type]


async def test_files_roundtrip(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    created = await client.files.create(file=("sales.csv", CSV, "text/csv"), purpose="user_data")
    assert created.id.startswith("file-") and created.bytes == len(CSV) and created.status == "processed"
    assert (await client.files.retrieve(created.id)).filename == "sales.csv"
    assert (await client.files.content(created.id)).content == CSV
    assert [f.id async for f in client.files.list(purpose="user_data")] == [created.id]
    form = oai.requests_to("POST", "/v1/files")[0].form
    assert form == {"purpose": "user_data", "file": {"filename": "sales.csv", "bytes": len(CSV)}}
    deleted = await client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError) as missing:
        await client.files.retrieve(created.id)
    assert missing.value.body["message"].startswith("No such File object")  # type: ignore[index]


async def test_file_upload_limits(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="is not one of"):
        await client.files.create(file=("a.csv", CSV), purpose="answers")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="File is empty"):
        await client.files.create(file=("a.csv", b""), purpose="user_data")
    oai.max_file_bytes = 1024
    with pytest.raises(openai.BadRequestError, match="too large"):
        await client.files.create(file=("big.csv", b"x" * 300_000), purpose="user_data")
    assert oai.files == {}
    assert oai.requests_to("POST", "/v1/files")[-1].form == {
        "purpose": "user_data",
        "file": {"filename": "big.csv", "bytes": 300_000},
    }


async def test_uploads_api_joins_parts_in_the_given_order_into_a_file(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    upload = await client.uploads.create(
        bytes=len(CSV), filename="sales.csv", mime_type="text/csv", purpose="user_data"
    )
    assert (upload.object, upload.status, upload.file, upload.bytes) == ("upload", "pending", None, len(CSV))
    assert upload.id.startswith("upload_") and upload.expires_at == upload.created_at + 3600
    second = await client.uploads.parts.create(upload.id, data=CSV[13:])  # parts may arrive in any order
    first = await client.uploads.parts.create(upload.id, data=CSV[:13])
    assert (first.object, first.upload_id) == ("upload.part", upload.id) and first.id.startswith("part_")
    assert oai.files == {}, "no file before complete"
    done = await client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5=hashlib.md5(CSV).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert (done.file.filename, done.file.bytes, done.file.purpose) == ("sales.csv", len(CSV), "user_data")
    assert await client.files.retrieve(done.file.id) == done.file
    assert (await client.files.content(done.file.id)).content == CSV
    with pytest.raises(openai.BadRequestError, match="status 'completed'"):
        await client.uploads.parts.create(upload.id, data=b"x")
    with pytest.raises(openai.BadRequestError, match="already completed"):
        await client.uploads.cancel(upload.id)


async def test_uploads_api_refuses_what_would_make_a_wrong_file(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    upload = await client.uploads.create(bytes=len(CSV), filename="a.csv", mime_type="text/csv", purpose="user_data")
    short = await client.uploads.parts.create(upload.id, data=CSV[:-1])
    with pytest.raises(openai.BadRequestError, match="does not match the bytes declared"):
        await client.uploads.complete(upload.id, part_ids=[short.id])
    rest = await client.uploads.parts.create(upload.id, data=CSV[-1:])
    with pytest.raises(openai.BadRequestError, match="md5"):
        await client.uploads.complete(upload.id, part_ids=[short.id, rest.id], md5="0" * 32)
    with pytest.raises(openai.BadRequestError, match="does not match the bytes declared"):
        await client.uploads.complete(upload.id, part_ids=[rest.id])
    oai.max_part_bytes = 4
    with pytest.raises(openai.BadRequestError, match="maximum part size"):
        await client.uploads.parts.create(upload.id, data=b"12345")
    cancelled = await client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and cancelled.file is None
    with pytest.raises(openai.BadRequestError, match="status 'cancelled'"):
        await client.uploads.parts.create(upload.id, data=b"x")
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        await client.uploads.complete(upload.id, part_ids=[short.id, rest.id])
    other = await client.uploads.create(bytes=1, filename="b.csv", mime_type="text/csv", purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="does not belong"):
        await client.uploads.complete(other.id, part_ids=[short.id])
    oai.expire_upload(other.id)
    with pytest.raises(openai.BadRequestError, match="status 'expired'"):
        await client.uploads.parts.create(other.id, data=b"x")
    with pytest.raises(openai.NotFoundError, match="No such Upload object"):
        await client.uploads.cancel("upload_missing")
    with pytest.raises(openai.BadRequestError, match="is not one of"):
        await client.uploads.create(bytes=1, filename="a.csv", mime_type="text/csv", purpose="answers")  # type: ignore[arg-type]
    assert oai.files == {}, "nothing half-uploaded ever becomes a file"


async def test_conversations_and_items(client: AsyncOpenAI) -> None:
    conv = await client.conversations.create(metadata={"channel": "C1"}, items=[{"role": "user", "content": "first"}])
    assert conv.id.startswith("conv_") and conv.metadata == {"channel": "C1"}
    assert (await client.conversations.retrieve(conv.id)).id == conv.id
    updated = await client.conversations.update(conv.id, metadata={"channel": "C2"})
    assert updated.metadata == {"channel": "C2"}
    created = await client.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "assistant", "content": "second"}]
    )
    assert [i.type for i in created.data] == ["message"]
    items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
    assert [i.role for i in items] == ["user", "assistant"]  # type: ignore[union-attr]
    newest = await client.conversations.items.list(conv.id, limit=1)
    assert newest.has_more and newest.data[0].id == created.data[0].id
    one = await client.conversations.items.retrieve(items[0].id, conversation_id=conv.id)  # type: ignore[union-attr]
    assert one.content[0].text == "first"  # type: ignore[union-attr]
    after_delete = await client.conversations.items.delete(items[0].id, conversation_id=conv.id)  # type: ignore[union-attr]
    assert after_delete.id == conv.id and after_delete.object == "conversation"
    assert (await client.conversations.delete(conv.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conv.id)


async def test_conversation_limits(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_many:
        await client.conversations.create(metadata={f"k{i}": "v" for i in range(17)})
    assert too_many.value.code == "object_above_max_properties"
    with pytest.raises(openai.BadRequestError) as long_value:
        await client.conversations.create(metadata={"k": "v" * 513})
    assert long_value.value.code == "string_above_max_length" and long_value.value.param == "metadata.k"
    with pytest.raises(openai.BadRequestError) as long_key:
        await client.conversations.create(metadata={"k" * 65: "v"})
    assert long_key.value.code == "string_above_max_length"
    with pytest.raises(openai.BadRequestError) as items:
        await client.conversations.create(items=[{"role": "user", "content": "x"}] * 21)
    assert items.value.code == "array_above_max_length"


async def test_containers_and_expiry(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    file_id, conv_id, container_id = await _session(client)
    container = await client.containers.retrieve(container_id)
    assert container.status == "running" and container.expires_after.minutes == 20  # type: ignore[union-attr]
    files = [f async for f in client.containers.files.list(container_id)]
    assert [(f.path, f.source) for f in files] == [("/mnt/data/sales.csv", "user")]
    by_id = await client.containers.files.create(container_id, file_id=file_id)
    uploaded = await client.containers.files.create(container_id, file=("costs.csv", b"a,b\n1,2\n"))
    assert uploaded.path == "/mnt/data/costs.csv" and by_id.source == "user"
    content = await client.containers.files.content.retrieve(uploaded.id, container_id=container_id)
    assert content.content == b"a,b\n1,2\n"
    await client.containers.files.delete(by_id.id, container_id=container_id)
    with pytest.raises(openai.NotFoundError, match="not found on container"):
        await client.containers.files.retrieve(by_id.id, container_id=container_id)

    oai.expire_container(container_id)
    assert (await client.containers.retrieve(container_id)).status == "expired"
    with pytest.raises(openai.BadRequestError, match=r"^Error code: 400.*Container is expired\.") as expired:
        await client.containers.files.list(container_id)
    assert expired.value.type == "invalid_request_error" and expired.value.code is None
    with pytest.raises(openai.BadRequestError, match="Container is expired"):
        await client.responses.create(
            model=MODEL,
            input="again",
            conversation=conv_id,
            tools=[{"type": "code_interpreter", "container": container_id}],
        )
    assert not oai.scripts and oai.conversations[conv_id]["items"] == []
    with pytest.raises(openai.NotFoundError):
        await client.containers.retrieve("cntr_missing")
    await client.containers.delete(container_id)
    assert container_id not in oai.containers


async def test_stream_raw_events_in_real_order(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    _, conv_id, container_id = await _session(client)
    oai.scripts.append(_code_script())
    stream = await client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Which region grew?"}]}],
        conversation=conv_id,
        tools=[{"type": "code_interpreter", "container": container_id}],
        include=["code_interpreter_call.outputs"],
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # reasoning
        "response.output_item.done",
    ]
    code_part = kinds[4 : kinds.index("response.code_interpreter_call.completed") + 2]
    assert code_part[:2] == ["response.output_item.added", "response.code_interpreter_call.in_progress"]
    assert code_part[-4:] == [
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_item.done",
    ]
    tail = [k for k in kinds[4 + len(code_part) :] if k != "response.output_text.delta"]
    assert tail == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2 and all(e.to_dict().get("obfuscation") for e in deltas)
    annotation = next(e for e in events if e.type == "response.output_text.annotation.added").annotation
    final = events[-1].response  # type: ignore[union-attr]
    text = final.output_text
    assert text[annotation.start_index : annotation.end_index] == "sandbox:/mnt/data/chart.png"  # type: ignore[union-attr]
    assert annotation.container_id == container_id and annotation.filename == "chart.png"  # type: ignore[union-attr]
    assert final.conversation.id == conv_id and final.usage.total_tokens > 0  # type: ignore[union-attr]
    call = final.output[1]
    assert call.type == "code_interpreter_call" and call.container_id == container_id
    assert [o.type for o in call.outputs] == ["logs", "image"]  # type: ignore[union-attr]
    assert call.outputs[1].url == "data:image/png;base64," + base64.b64encode(PNG).decode()  # type: ignore[union-attr]
    chart = await client.containers.files.content.retrieve(annotation.file_id, container_id=container_id)  # type: ignore[union-attr]
    assert chart.content == PNG
    generated = [f async for f in client.containers.files.list(container_id)]
    assert {(f.path, f.source) for f in generated} >= {
        ("/mnt/data/chart.png", "assistant"),
        ("/mnt/data/scratch.txt", "assistant"),
    }
    items = [i async for i in client.conversations.items.list(conv_id, order="asc")]
    assert [i.type for i in items] == ["message", "reasoning", "code_interpreter_call", "message"]
    assert (await client.responses.retrieve(final.id)).status == "completed"
    assert oai.active_streams == 0


async def test_stream_helper_and_outputs_only_when_included(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    _, conv_id, container_id = await _session(client)
    oai.scripts.append(_code_script())
    async with client.responses.stream(
        model=MODEL,
        input="Plot it",
        conversation=conv_id,
        tools=[{"type": "code_interpreter", "container": container_id}],
        stream_options={"include_obfuscation": False},
    ) as stream:
        deltas = [e async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas[-1].snapshot == final.output_text
    assert not any("obfuscation" in e.to_dict() for e in deltas)
    assert final.output_text.endswith("[chart.png](sandbox:/mnt/data/chart.png)")
    call = final.output[1]
    assert call.type == "code_interpreter_call" and call.outputs is None


async def test_auto_container_and_non_stream(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    uploaded = await client.files.create(file=("sales.csv", CSV), purpose="user_data")
    oai.scripts.append(_code_script(files=[], image_outputs=[]))
    first = await client.responses.create(
        model=MODEL,
        input="Summarise",
        tools=[{"type": "code_interpreter", "container": {"type": "auto", "file_ids": [uploaded.id]}}],
    )
    call = first.output[1]
    assert call.type == "code_interpreter_call"
    auto_files = oai.containers[call.container_id]["files"].values()
    assert [f["object"]["path"] for f in auto_files] == ["/mnt/data/sales.csv"]
    second = await client.responses.create(
        model=MODEL,
        input="And again",
        previous_response_id=first.id,
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
    )
    assert second.output_text == "Echo: And again" and len(oai.containers) == 1
    oai.expire_container(call.container_id)
    with pytest.raises(openai.BadRequestError, match="Container is expired"):
        await client.responses.create(
            model=MODEL,
            input="Once more",
            previous_response_id=second.id,
            tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        )


async def test_conversation_locked_while_streaming(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    conv = await client.conversations.create()
    hold = asyncio.Event()
    oai.scripts.append(Script(text="A long answer that keeps going for a while.", hold=hold))
    stream = await client.responses.create(model=MODEL, input="one", conversation=conv.id, stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            break
    with pytest.raises(openai.BadRequestError) as locked:
        await client.responses.create(model=MODEL, input="two", conversation=conv.id)
    assert locked.value.code == "conversation_locked" and locked.value.param == "conversation"
    assert locked.value.body["message"].startswith("Another process is currently operating")  # type: ignore[index]
    hold.set()
    rest = [event.type async for event in stream]
    assert rest[-1] == "response.completed"
    after = await client.responses.create(model=MODEL, input="three", conversation={"id": conv.id})
    assert after.output_text == "Echo: three"
    items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
    assert [i.role for i in items] == ["user", "assistant", "user", "assistant"]  # type: ignore[union-attr]


async def test_disconnect_stops_run_and_releases_lock(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    conv = await client.conversations.create()
    hold = asyncio.Event()
    oai.scripts.append(Script(text="Never finished because the client leaves.", hold=hold))
    stream = await client.responses.create(model=MODEL, input="one", conversation=conv.id, stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            break
    assert oai.active_streams == 1
    await stream.close()
    await oai.wait_for(lambda: oai.active_streams == 0)
    assert oai.conversations[conv.id]["items"] == []
    assert next(iter(oai.responses.values()))["status"] == "cancelled"
    again = await client.responses.create(model=MODEL, input="two", conversation=conv.id)
    assert again.status == "completed"


async def test_incomplete_failed_and_error_events(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    conv = await client.conversations.create()
    oai.scripts.append(Script(text="Cut off mid", status="incomplete"))
    events = [e async for e in await client.responses.create(model=MODEL, input="a", conversation=conv.id, stream=True)]
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert events[-1].response.output[0].status == "incomplete"  # type: ignore[union-attr]

    oai.scripts.append(Script(text="Half an answer", status="failed"))
    async with client.responses.stream(model=MODEL, input="b", conversation=conv.id) as stream:
        kinds = [e.type async for e in stream]
        assert kinds[-1] == "response.failed"
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()
    failed = oai.responses[next(reversed(oai.responses))]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"

    oai.scripts.append(Script(text="Oops", error_event={"code": "server_error", "message": "boom"}))
    events = [e async for e in await client.responses.create(model=MODEL, input="c", conversation=conv.id, stream=True)]
    assert events[-1].type == "error" and events[-1].message == "boom"  # type: ignore[union-attr]
    roles = [i["role"] for i in oai.conversations[conv.id]["items"]]
    assert roles == ["user", "assistant"]  # only the incomplete turn was kept
    assert not oai._locked


async def test_injected_errors(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    oai.fail_next(
        "/v1/responses",
        status=429,
        code="insufficient_quota",
        message="You exceeded your current quota, please check your plan and billing details.",
    )
    with pytest.raises(openai.RateLimitError) as quota:
        await client.responses.create(model=MODEL, input="hi")
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    assert quota.value.request_id and quota.value.request_id.startswith("req_")
    assert (await client.responses.create(model=MODEL, input="hi")).output_text == "Echo: hi"

    oai.fail_next(
        "/v1/responses",
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached for requests",
        headers={"retry-after-ms": "10"},
    )
    retrying = client.with_options(max_retries=1)
    assert (await retrying.responses.create(model=MODEL, input="retry")).output_text == "Echo: retry"
    retried = oai.requests_to("POST", "/v1/responses")[-1]
    assert retried.headers["x-stainless-retry-count"] == "1"

    oai.fail_next("/v1/files", status=500, code=None, message="The server had an error", times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.files.list()


async def test_auth_and_request_ids(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with AsyncOpenAI(base_url=oai.base_url, api_key="sk-wrong-key-123", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as denied:
            await wrong.files.list()
    assert denied.value.code == "invalid_api_key" and denied.value.param is None
    assert "sk-wrong-key-123" not in denied.value.message
    raw = await client.files.with_raw_response.list()
    assert raw.headers["x-request-id"].startswith("req_")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{oai.base_url}/files") as anonymous:
            assert anonymous.status == 401 and anonymous.headers["x-request-id"].startswith("req_")
        async with http.get(f"{oai.base_url}/nope", headers={"Authorization": "Bearer sk-test"}) as unknown:
            assert unknown.status == 404
            assert (await unknown.json())["error"]["message"] == "Invalid URL (GET /v1/nope)"


async def test_response_validation_and_cancel(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    conv = await client.conversations.create()
    first = await client.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.BadRequestError) as both:
        await client.responses.create(model=MODEL, input="x", conversation=conv.id, previous_response_id=first.id)
    assert both.value.code == "mutually_exclusive_parameters"
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", conversation="conv_missing")
    with pytest.raises(openai.BadRequestError) as no_model:
        await client.responses.create(input="x", extra_body={"model": None})  # type: ignore[call-overload]
    assert no_model.value.code == "missing_required_parameter"
    with pytest.raises(openai.BadRequestError, match="synchronous"):
        await client.responses.cancel(first.id)

    hold = asyncio.Event()
    oai.scripts.append(Script(text="slow", hold=hold))
    queued = await client.responses.create(model=MODEL, input="bg", background=True)
    assert queued.status == "queued"
    await oai.wait_for(lambda: oai.responses[queued.id]["status"] == "in_progress")
    cancelled = await client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and oai.active_streams == 0
    assert [i.type async for i in client.responses.input_items.list(first.id)] == ["message"]


async def test_shapes_validate_strictly_against_sdk_types(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    """The SDK parses leniently; validating with pydantic catches missing or mistyped fields."""
    _, conv_id, container_id = await _session(client)
    oai.scripts.append(_code_script())
    stream = await client.responses.create(
        model=MODEL,
        input="Plot it",
        conversation=conv_id,
        tools=[{"type": "code_interpreter", "container": container_id}],
        include=["code_interpreter_call.outputs"],
        stream=True,
    )
    events = TypeAdapter(ResponseStreamEvent)
    async for event in stream:
        validated = events.validate_python(event.to_dict())
        assert type(validated).__name__ == type(event).__name__
    for response in oai.responses.values():
        Response.model_validate(response)
    for record in oai.files.values():
        FileObject.model_validate(record["object"])
    items = TypeAdapter(ConversationItem)
    for conversation in oai.conversations.values():
        Conversation.model_validate(conversation["object"])
        for item in conversation["items"]:
            items.validate_python(item)
    for container in oai.containers.values():
        openai.types.ContainerRetrieveResponse.model_validate(container["object"])
        for cfile in container["files"].values():
            FileRetrieveResponse.model_validate(cfile["object"])


async def test_function_calls_stream_like_the_api_and_must_be_answered(oai: FakeOpenAI, client: AsyncOpenAI) -> None:
    tool = {"type": "function", "name": "slack_chart", "parameters": {"type": "object", "properties": {}}}
    conv = await client.conversations.create()
    oai.scripts.append(Script(text="", function_calls=[FunctionCall("slack_chart", '{"charts": [{"title": "매출"}]}')]))
    async with client.responses.stream(model=MODEL, input="chart it", conversation=conv.id, tools=[tool]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = final.output
    assert call.type == "function_call" and call.name == "slack_chart"
    assert call.arguments == '{"charts": [{"title": "매출"}]}'

    with pytest.raises(openai.BadRequestError, match=f"No tool output found for function call {call.call_id}"):
        await client.responses.create(model=MODEL, input="next", conversation=conv.id)
    with pytest.raises(openai.BadRequestError, match="No tool call found for function call output"):
        await client.responses.create(
            model=MODEL,
            conversation=conv.id,
            input=[{"type": "function_call_output", "call_id": "call_unknown", "output": "{}"}],
        )
    answered = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"ok": true}'}],
    )
    assert answered.status == "completed"
