"""Loopback fake of OpenAI's Files, Conversations, Containers and Responses APIs.

`FakeOpenAI` is an aiohttp server on 127.0.0.1 that answers with the JSON shapes, SSE event order,
error bodies and limits of the real API (``/work/shared/reference/openai-api.md``), so the real
``openai.AsyncOpenAI`` client can be pointed at it::

    async with FakeOpenAI() as oai:
        client = AsyncOpenAI(base_url=oai.base_url, api_key="sk-test", max_retries=0)
        oai.scripts.append(Script(text="North grew fastest.", code="df.plot()",
                                  files=[GeneratedFile("chart.png", png_bytes)]))
        ...

What each response does is scripted with `Script`; every request is kept in `FakeOpenAI.requests`.
Where public material does not pin the real behaviour down, the fake takes the stricter reading, so a
bot that passes here does not lean on kindness. Those choices [unverified against the live API]:

- 404 wording for conversations, containers, responses, items ("... with id '<id>' not found.");
  files and container files use the wording seen in public reports.
- Empty upload -> 400 "File is empty."; over 512 MB -> 400 "File is too large ..." (drained, not kept).
- Container file operations on an expired container -> 400 "Container is expired." (GET of the
  container itself still answers, with status "expired").
- A stream the client drops stops the run, leaves the stored response "cancelled", unlocks the
  conversation and adds nothing to it; failed/errored runs add nothing either, incomplete ones do.
- Citation indices span the ``sandbox:/mnt/data/<name>`` link target inside the markdown link.
- Uploads API: unknown upload -> 404 "No such Upload object: <id>"; a part or complete on an upload that
  is not pending -> 400 "Cannot add parts to an Upload with status '<status>'." / "Upload <id> is already
  <status>."; a part over 64 MiB -> 400; complete with parts totalling other than the declared ``bytes`` -> 400;
  a wrong ``md5`` -> 400; cancel of a completed upload -> 400. Parts are read as they stream in.
- An unknown model on ``GET /v1/models/{model}`` -> 404 "The model `<id>` does not exist or you do not
  have access to it." with code ``model_not_found`` (type invalid_request_error, param null).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import secrets
import string
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

MAX_FILE_BYTES = 512 * 1024 * 1024
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_ITEMS_PER_CALL = 20
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MEMORY_LIMITS = ("1g", "4g", "16g", "64g")
# Models the fake serves on /v1/models; `FakeOpenAI.models` can be changed per test.
KNOWN_MODELS = ("gpt-5.1", "gpt-5-mini", "gpt-test")
MODEL_CREATED_AT = 1_731_456_000
TEXT_DELTA_CHARS = 20
CODE_DELTA_CHARS = 40
UPLOAD_CHUNK_BYTES = 256 * 1024
# The Uploads API: each part at most 64 MB, an Upload at most 8 GB, alive for one hour.
MAX_PART_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024
UPLOAD_LIFETIME_S = 3600
INCLUDE_CODE_OUTPUTS = "code_interpreter_call.outputs"

CONTAINER_EXPIRED = "Container is expired."
CONVERSATION_LOCKED = "Another process is currently operating on this conversation. Please retry in a few seconds."
SERVER_ERROR_MESSAGE = (
    "An error occurred while processing your request. You can retry your request, or contact us through "
    "our help center at help.openai.com if the error persists."
)
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username. You can obtain an API key "
    "from https://platform.openai.com/account/api-keys."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


@dataclass
class RecordedRequest:
    """One request as the fake saw it. `form` holds multipart fields; the file part is
    recorded as ``{"filename": ..., "bytes": size}``, never its content."""

    method: str
    path: str
    query: dict[str, Any]
    json: Any | None
    headers: dict[str, str]
    form: dict[str, Any] | None = None


@dataclass
class GeneratedFile:
    """A file the model writes to /mnt/data during a code run (container file, source "assistant").
    With ``cite=True`` the answer links it (``[label](sandbox:/mnt/data/<filename>)``, the label defaulting
    to the file name) and carries a ``container_file_citation`` annotation."""

    filename: str
    content: bytes
    cite: bool = True
    label: str | None = None


@dataclass
class FunctionCall:
    """A call of a function tool the request offers (``{"type": "function", "name": ...}``), with its
    arguments as the JSON text the model writes (streamed in ``function_call_arguments.delta`` pieces)."""

    name: str
    arguments: str


@dataclass
class Script:
    """What one response does.

    - ``text``: final assistant text, streamed in ~20-character ``output_text.delta`` pieces.
    - ``code``/``logs``/``files``/``image_outputs``: a ``code_interpreter_call`` item before the message
      (a list of code strings: one call each, the files, logs and images belonging to the first; only the
      request's ``max_tool_calls`` of them run, as the API ignores further attempts);
      ``files`` land in the container, ``image_outputs`` (PNG bytes) appear only as
      ``{"type": "image", "url": "data:image/png;base64,..."}`` outputs when the request includes
      ``code_interpreter_call.outputs`` (otherwise ``outputs`` is null, as on the real API).
    - ``reasoning``: a reasoning item first.
    - ``status``: "completed", "incomplete" (``incomplete_reason``: "max_output_tokens" or
      "content_filter") or "failed" (server_error after the text deltas, terminal ``response.failed``).
    - ``error_event``: fields of a bare ``error`` event sent after the text deltas instead of a
      terminal response event (defaults: code "server_error", the real generic message, param null).
    - ``delay_s``: sleep after every SSE event. ``hold``: pause after the first text delta until set
      (with ``hold_after_chars``: after the delta that reaches that many characters of text).
    - ``usage``: overrides the computed usage keys.
    - ``function_calls``: `FunctionCall` items after the message (or instead of it when ``text`` is
      empty); the response then ends, and the conversation's next request must answer each call with a
      ``function_call_output`` item (400 otherwise, as on the API).
    """

    text: str = "OK"
    code: str | list[str] | None = None
    logs: str = ""
    files: list[GeneratedFile] = field(default_factory=list)
    image_outputs: list[bytes] = field(default_factory=list)
    reasoning: bool = False
    status: str = "completed"
    incomplete_reason: str = "max_output_tokens"
    error_event: dict[str, Any] | None = None
    delay_s: float = 0.0
    hold: asyncio.Event | None = None
    hold_after_chars: int = 0
    usage: dict[str, Any] | None = None
    function_calls: list[FunctionCall] = field(default_factory=list)


class ApiError(Exception):
    """An HTTP error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = dict(headers or {})

    def to_response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


def _bad(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _missing(param: str) -> ApiError:
    return _bad(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> ApiError:
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 2 else " and ".join(quoted)
    return _bad(f"Invalid value: '{value}'. Supported values are: {listed}.", param=param, code="invalid_value")


def _hex_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def _file_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "file-" + "".join(secrets.choice(alphabet) for _ in range(22))


def _item_id(kind: str) -> str:
    prefixes = {"message": "msg_", "reasoning": "rs_", "code_interpreter_call": "ci_", "function_call": "fc_"}
    return _hex_id(prefixes.get(kind, "item_"))


def _now() -> int:
    return int(time.time())


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return key[:2] + "*" * (len(key) - 2)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _too_big(param: str, problem: str, expected: str, got: str, code: str) -> ApiError:
    return _bad(f"Invalid '{param}': {problem}. Expected {expected}, but got {got} instead.", param=param, code=code)


def _int_query(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"Invalid '{name}': expected an integer.", param=name, code="invalid_type") from None
    if value < low:
        raise _too_big(name, "integer below minimum value", f"a value >= {low}", str(value), "integer_below_min_value")
    if value > high:
        raise _too_big(name, "integer above maximum value", f"a value <= {high}", str(value), "integer_above_max_value")
    return value


def _page(objs: list[dict[str, Any]], query: Any, *, default_limit: int = 20, max_limit: int = 100) -> dict[str, Any]:
    """A cursor page ``{object:"list", data, first_id, last_id, has_more}`` over `objs` (oldest first);
    honours ``after``, ``limit`` and ``order`` (default "desc")."""
    limit = _int_query(query, "limit", default_limit, 1, max_limit)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _invalid_value("order", order, ("asc", "desc"))
    ordered = list(objs) if order == "asc" else list(reversed(objs))
    after = query.get("after")
    if after:
        ids = [o["id"] for o in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    data = ordered[:limit]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return dict(object="list", data=data, first_id=first, last_id=last, has_more=len(ordered) > limit)


def _check_metadata(metadata: Any) -> dict[str, str]:
    """Validate the 16 pairs / 64-char key / 512-char string value rules; return a copy."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _bad("Invalid type for 'metadata': expected an object.", param="metadata", code="invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        expected = f"an object with at most {MAX_METADATA_PAIRS} properties"
        got = f"an object with {len(metadata)} properties"
        raise _too_big("metadata", "too many properties", expected, got, "object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            expected, got = f"a key with maximum length {MAX_METADATA_KEY_CHARS}", f"a key with length {len(key)}"
            raise _too_big("metadata", "key too long", expected, got, "string_above_max_length")
        if not isinstance(value, str):
            raise _bad(
                f"Invalid type for 'metadata.{key}': expected a string.", param=f"metadata.{key}", code="invalid_type"
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            expected = f"a string with maximum length {MAX_METADATA_VALUE_CHARS}"
            got = f"a string with length {len(value)}"
            raise _too_big(f"metadata.{key}", "string too long", expected, got, "string_above_max_length")
    return dict(metadata)


def _check_item_count(items: list[Any], param: str) -> None:
    if len(items) > MAX_ITEMS_PER_CALL:
        expected, got = f"an array with maximum length {MAX_ITEMS_PER_CALL}", f"an array with length {len(items)}"
        raise _too_big(param, "array too long", expected, got, "array_above_max_length")


def _to_items(value: Any, param: str) -> list[dict[str, Any]]:
    """Input (a string or a list of input items) -> stored conversation items with ids and status."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _bad(f"Invalid type for '{param}': expected a string or an array.", param=param, code="invalid_type")
    items = []
    for index, raw in enumerate(value):
        item = copy.deepcopy(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _invalid_value(f"{param}[{index}].role", role, ("assistant", "system", "developer", "user"))
            content = item.get("content")
            if isinstance(content, str):
                assistant = role == "assistant"
                part: dict[str, Any] = (
                    dict(type="output_text", annotations=[]) if assistant else dict(type="input_text")
                )
                content = [{**part, "text": content}]
            item["content"] = content or []
            item.setdefault("status", "completed")
        item.setdefault("id", _item_id(kind))
        items.append(item)
    return items


def _check_function_outputs(context: list[dict[str, Any]], input_items: list[dict[str, Any]]) -> None:
    """The API's rule for function calls: every call in context is answered by a ``function_call_output``
    (in context or in this input), and every output answers a call in context."""
    calls = {it.get("call_id") for it in context if it.get("type") == "function_call"}
    answered = {it.get("call_id") for it in context + input_items if it.get("type") == "function_call_output"}
    for item in input_items:
        if item.get("type") == "function_call_output":
            if item.get("call_id") not in calls:
                message = f"No tool call found for function call output with call_id {item.get('call_id')}."
                raise _bad(message, param="input")
            if not isinstance(item.get("output"), str):
                raise _bad("Invalid type for 'input[].output': expected a string.", param="input")
    for call_id in sorted(str(c) for c in calls - answered):
        raise _bad(f"No tool output found for function call {call_id}.", param="input")


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message in a Responses request body ("" if none)."""
    value = body.get("input")
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return str(content)
        texts = [p.get("text", "") for p in content or [] if p.get("type") == "input_text"]
        if texts:
            return str(texts[-1])
    return ""


def _codes(script: Script) -> list[str]:
    """The code of each code_interpreter_call the script makes."""
    if script.code is None:
        return []
    return [script.code] if isinstance(script.code, str) else list(script.code)


def _ev(kind: str, **fields: Any) -> dict[str, Any]:
    """An SSE event payload (the sequence number is added when it is written)."""
    return {"type": kind, **fields}


def _text_of(items: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for it in items for p in (it.get("content") or []) if isinstance(p, dict))


_RECORD = web.RequestKey("record", RecordedRequest)
_REQUEST_ID = web.RequestKey("request_id", str)


def _body(request: web.Request) -> dict[str, Any]:
    body = request[_RECORD].json
    return body if isinstance(body, dict) else {}


@dataclass
class _Injection:
    path_prefix: str
    method: str | None
    error: ApiError
    remaining: int


@dataclass
class _Run:
    """One response being generated."""

    response: dict[str, Any]
    script: Script
    input_items: list[dict[str, Any]]
    conversation_id: str | None
    container_id: str | None
    include: list[str]
    obfuscate: bool
    finished: bool = False

    def obfuscation(self, delta: str) -> dict[str, str]:
        """The random ``obfuscation`` padding the API adds to delta events unless
        ``stream_options.include_obfuscation`` is false."""
        return {"obfuscation": secrets.token_urlsafe(8)[: max(1, 16 - len(delta))]} if self.obfuscate else {}


class FakeOpenAI:
    """The fake server. State is public for assertions:

    - ``requests``: every request, in order (`RecordedRequest`);
    - ``files``: file id -> ``{"object": FileObject dict, "content": bytes}``;
    - ``uploads``: upload id -> ``{"object": Upload dict, "parts": {part id: bytes}}`` (a completed upload's
      ``file`` is also in ``files``, its content the parts joined in ``part_ids`` order);
    - ``uploads_api``: False makes every ``/v1/uploads`` route answer as an unknown URL does (404 "Invalid
      URL"), like an OpenAI-compatible gateway that lacks the Uploads API;
    - ``hold_parts``: when an unset `asyncio.Event`, each ``POST /v1/uploads/{id}/parts`` waits for it before
      reading its body (a slow OpenAI: the client's send is held back by TCP flow control);
    - ``conversations``: conv id -> ``{"object": ..., "items": [...], "deleted": bool}`` (deleting a
      conversation keeps its items, as the SDK docstring says; lookups then 404);
    - ``containers``: cntr id -> ``{"object": ..., "files": {cfile id: {"object": ..., "content": bytes}}}``;
    - ``responses``: resp id -> Response dict (live while generating, final afterwards; not for store=false);
    - ``scripts``: FIFO of `Script` consumed by ``POST /v1/responses``; ``default_script(body)`` when empty;
    - ``active_streams``: responses being generated right now (streamed, plain or background).
    """

    def __init__(self, *, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.hold_parts: asyncio.Event | None = None
        self.uploads_api = True
        self.max_part_bytes = MAX_PART_BYTES
        self.conversations: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, dict[str, Any]] = {}
        self.responses: dict[str, dict[str, Any]] = {}
        self.scripts: list[Script] = []
        self.models: dict[str, dict[str, Any]] = {
            name: {"id": name, "object": "model", "created": MODEL_CREATED_AT, "owned_by": "system"}
            for name in KNOWN_MODELS
        }
        self.default_script: Callable[[dict[str, Any]], Script] = lambda body: Script(
            text=f"Echo: {_last_user_text(body)}"
        )
        self.max_file_bytes = MAX_FILE_BYTES
        self.active_streams = 0
        self._inputs: dict[str, list[dict[str, Any]]] = {}
        self._locked: set[str] = set()
        self._injections: list[_Injection] = []
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and set `base_url`."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._routes(app.router)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        """Cancel in-flight generations (held streams included) and stop the server."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path starts with `path_prefix` (e.g. "/v1/responses")."""
        return [r for r in self.requests if r.method == method.upper() and r.path.startswith(path_prefix)]

    # When True, a response whose conversation history holds a code_interpreter_call from an expired
    # container fails with 400 "Expected container_id …" (reported in pydantic-ai#7461); whether the
    # live API does this for conversations is unverified, so it is opt-in.
    stale_history_fails = False

    def expire_container(self, container_id: str) -> None:
        """Mark a container expired: GET shows status "expired"; files and responses on it get 400."""
        self.containers[container_id]["object"]["status"] = "expired"
        self._notify()

    def fail_next(
        self,
        path_prefix: str,
        *,
        status: int,
        code: str | None,
        message: str,
        type: str | None = None,
        param: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next `times` requests under `path_prefix` (after auth, before any work) with this
        error. `type` defaults as the real API does: "insufficient_quota" for that code, "requests" for
        other 429s, "server_error" for 5xx, else "invalid_request_error". `headers` (e.g. retry-after,
        x-should-retry) are added to the error response."""
        if type is None:
            by_status = "requests" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
            type = "insufficient_quota" if code == "insufficient_quota" else by_status
        error = ApiError(status, message, type=type, param=param, code=code, headers=headers)
        self._injections.append(_Injection(path_prefix, method and method.upper(), error, times))

    async def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking on every request and stream change.
        Raises TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/models", self._model_list)
        r.add_get("/v1/models/{model}", self._model_get)
        r.add_post("/v1/files", self._file_create)
        r.add_get("/v1/files", self._file_list)
        r.add_get("/v1/files/{id}", self._file_get)
        r.add_delete("/v1/files/{id}", self._file_delete)
        r.add_get("/v1/files/{id}/content", self._file_content)
        r.add_post("/v1/uploads", self._upload_create)
        r.add_post("/v1/uploads/{id}/parts", self._upload_part)
        r.add_post("/v1/uploads/{id}/complete", self._upload_complete)
        r.add_post("/v1/uploads/{id}/cancel", self._upload_cancel)
        r.add_post("/v1/conversations", self._conv_create)
        r.add_get("/v1/conversations/{id}", self._conv_get)
        r.add_post("/v1/conversations/{id}", self._conv_update)
        r.add_delete("/v1/conversations/{id}", self._conv_delete)
        r.add_get("/v1/conversations/{id}/items", self._items_list)
        r.add_post("/v1/conversations/{id}/items", self._items_create)
        r.add_get("/v1/conversations/{id}/items/{item}", self._item_get)
        r.add_delete("/v1/conversations/{id}/items/{item}", self._item_delete)
        r.add_post("/v1/containers", self._container_create)
        r.add_get("/v1/containers", self._container_list)
        r.add_get("/v1/containers/{id}", self._container_get)
        r.add_delete("/v1/containers/{id}", self._container_delete)
        r.add_post("/v1/containers/{id}/files", self._cfile_create)
        r.add_get("/v1/containers/{id}/files", self._cfile_list)
        r.add_get("/v1/containers/{id}/files/{file}", self._cfile_get)
        r.add_delete("/v1/containers/{id}/files/{file}", self._cfile_delete)
        r.add_get("/v1/containers/{id}/files/{file}/content", self._cfile_content)
        r.add_post("/v1/responses", self._response_create)
        r.add_get("/v1/responses/{id}", self._response_get)
        r.add_delete("/v1/responses/{id}", self._response_delete)
        r.add_post("/v1/responses/{id}/cancel", self._response_cancel)
        r.add_get("/v1/responses/{id}/input_items", self._response_input_items)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = "req_" + secrets.token_hex(16)
        request[_REQUEST_ID] = request_id
        try:
            bad_json = await self._record(request)
            self._authenticate(request)
            self._take_injection(request)
            if bad_json:
                raise _bad(BAD_JSON_MESSAGE)
            response: web.StreamResponse = await handler(request)
        except ApiError as err:
            response = err.to_response()
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            response = ApiError(404, f"Invalid URL ({request.method} {request.path})").to_response()
        if not response.prepared:
            response.headers["x-request-id"] = request_id
        return response

    async def _record(self, request: web.Request) -> bool:
        """Append the request to `requests`, parsing a JSON body; return True if the body is not valid JSON."""
        query: dict[str, Any] = {}
        for key in request.query:
            values = request.query.getall(key)
            query[key] = values[0] if len(values) == 1 else values
        record = RecordedRequest(
            request.method, request.path, query, None, {k.lower(): v for k, v in request.headers.items()}
        )
        self.requests.append(record)
        request[_RECORD] = record
        self._notify()
        if request.content_type == "application/json" and request.can_read_body:
            raw = await request.read()
            try:
                record.json = json.loads(raw) if raw else None
            except ValueError:
                return True
        return False

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        key = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        if not key:
            raise ApiError(401, NO_KEY_MESSAGE)
        if key != self.api_key:
            hint = "You can find your API key at https://platform.openai.com/account/api-keys."
            raise ApiError(401, f"Incorrect API key provided: {_mask_key(key)}. {hint}", code="invalid_api_key")

    def _take_injection(self, request: web.Request) -> None:
        for injection in self._injections:
            if request.path.startswith(injection.path_prefix) and injection.method in (None, request.method):
                injection.remaining -= 1
                if injection.remaining <= 0:
                    self._injections.remove(injection)
                raise injection.error

    async def _read_multipart(self, request: web.Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
        """Read form fields and the ``file`` part in chunks; a file over `max_file_bytes` is drained
        without being kept and raises 400 [message unverified]."""
        if not request.content_type.startswith("multipart/"):
            raise _missing("file")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        size = 0
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader), "nested multipart is not part of the Files API"
            if part.name == "file" or part.filename is not None:
                buffer = bytearray()
                while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
                    size += len(chunk)
                    if size <= self.max_file_bytes:
                        buffer += chunk
                    else:
                        buffer.clear()
                upload = (part.filename or "upload", bytes(buffer))
            else:
                fields[part.name or ""] = await part.text()
        form: dict[str, Any] = dict(fields)
        if upload is not None:
            form["file"] = {"filename": upload[0], "bytes": size}
        request[_RECORD].form = form
        if size > self.max_file_bytes:
            limit_mb = self.max_file_bytes // (1024 * 1024)
            raise _bad(f"File is too large ({size} bytes). The maximum file size is {limit_mb} MB.", param="file")
        return fields, upload

    def _file(self, file_id: str, *, param: str | None = "id") -> dict[str, Any]:
        record = self.files.get(file_id)
        if record is None:
            raise ApiError(404, f"No such File object: {file_id}", param=param)
        return record

    async def _model_list(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": list(self.models.values())})

    async def _model_get(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        model = self.models.get(name)
        if model is None:
            message = f"The model `{name}` does not exist or you do not have access to it."
            raise ApiError(404, message, code="model_not_found")
        return web.json_response(model)

    async def _file_create(self, request: web.Request) -> web.Response:
        fields, upload = await self._read_multipart(request)
        if upload is None:
            raise _missing("file")
        purpose = fields.get("purpose")
        if not purpose:
            raise _missing("purpose")
        if purpose not in FILE_PURPOSES:
            raise _bad(f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose")
        filename, content = upload
        if not content:
            raise _bad("File is empty.", param="file")
        created = _now()
        expires_at = None
        if "expires_after[seconds]" in fields:
            seconds = int(fields["expires_after[seconds]"])
            if not 3600 <= seconds <= 2592000:
                message = "Invalid 'expires_after.seconds': expected a value between 3600 and 2592000."
                raise _bad(message, param="expires_after.seconds")
            expires_at = created + seconds
        obj: dict[str, Any] = dict(
            id=_file_id(), object="file", bytes=len(content), created_at=created, expires_at=expires_at
        )
        obj.update(filename=filename, purpose=purpose, status="processed", status_details=None)
        self.files[obj["id"]] = {"object": obj, "content": content}
        return web.json_response(obj)

    async def _file_list(self, request: web.Request) -> web.Response:
        objs = [f["object"] for f in self.files.values()]
        if purpose := request.query.get("purpose"):
            objs = [o for o in objs if o["purpose"] == purpose]
        return web.json_response(_page(objs, request.query, default_limit=10000, max_limit=10000))

    async def _file_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._file(request.match_info["id"])["object"])

    async def _file_delete(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        self._file(file_id)
        del self.files[file_id]
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def _file_content(self, request: web.Request) -> web.Response:
        record = self._file(request.match_info["id"])
        if record["object"]["purpose"] == "assistants":
            raise _bad("Not allowed to download files of purpose: assistants")
        return web.Response(body=record["content"], content_type="application/octet-stream")

    # ------------------------------------------------------------------ Uploads API
    def expire_upload(self, upload_id: str) -> None:
        """Let a pending upload's hour run out: status "expired"; parts and complete are refused."""
        self.uploads[upload_id]["object"]["status"] = "expired"
        self._notify()

    def _upload(self, upload_id: str) -> dict[str, Any]:
        record = self.uploads.get(upload_id)
        if record is None:
            raise ApiError(404, f"No such Upload object: {upload_id}", param="upload_id")
        obj = record["object"]
        if obj["status"] == "pending" and _now() >= obj["expires_at"]:
            obj["status"] = "expired"
        return record

    def _uploads_api_here(self) -> None:
        if not self.uploads_api:
            raise web.HTTPNotFound()  # answered as the unknown URL it then is

    async def _upload_create(self, request: web.Request) -> web.Response:
        self._uploads_api_here()
        body = _body(request)
        for name in ("bytes", "filename", "mime_type", "purpose"):
            if body.get(name) is None:
                raise _missing(name)
        size, purpose = body["bytes"], body["purpose"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad("Invalid 'bytes': expected a non-negative integer.", param="bytes", code="invalid_type")
        if size > MAX_UPLOAD_BYTES:
            raise _too_big("bytes", "integer above maximum value", f"a value <= {MAX_UPLOAD_BYTES}", str(size),
                           "integer_above_max_value")  # fmt: skip
        if purpose not in FILE_PURPOSES:
            raise _bad(f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose")
        created = _now()
        obj: dict[str, Any] = dict(id=_hex_id("upload_"), object="upload", bytes=size, created_at=created)
        obj.update(expires_at=created + UPLOAD_LIFETIME_S, filename=str(body["filename"]), purpose=purpose)
        obj.update(status="pending", file=None)
        self.uploads[obj["id"]] = {"object": obj, "parts": {}, "mime_type": str(body["mime_type"])}
        return web.json_response(obj)

    def _pending(self, record: dict[str, Any], *, adding: bool) -> None:
        status = record["object"]["status"]
        if status == "pending":
            return
        if adding:
            raise _bad(f"Cannot add parts to an Upload with status '{status}'.")
        raise _bad(f"Upload {record['object']['id']} is already {status}.")

    async def _upload_part(self, request: web.Request) -> web.Response:
        self._uploads_api_here()
        record = self._upload(request.match_info["id"])
        self._pending(record, adding=True)
        if self.hold_parts is not None:
            await self.hold_parts.wait()
        data = await self._read_part(request)
        self._pending(record, adding=True)  # cancelled or expired while the body came in
        part = {
            "id": _hex_id("part_"),
            "object": "upload.part",
            "created_at": _now(),
            "upload_id": record["object"]["id"],
        }
        record["parts"][part["id"]] = data
        self._notify()
        return web.json_response(part)

    async def _read_part(self, request: web.Request) -> bytes:
        """The ``data`` field of a part's multipart body, read in chunks; over `max_part_bytes` it is drained."""
        if not request.content_type.startswith("multipart/"):
            raise _missing("data")
        reader = await request.multipart()
        data: bytes | None = None
        size = 0
        while (field := await reader.next()) is not None:
            assert isinstance(field, BodyPartReader), "nested multipart is not part of the Uploads API"
            if field.name != "data":
                await field.release()
                continue
            buffer = bytearray()
            while chunk := await field.read_chunk(UPLOAD_CHUNK_BYTES):
                size += len(chunk)
                if size <= self.max_part_bytes:
                    buffer += chunk
            data = bytes(buffer)
        request[_RECORD].form = {"data": {"bytes": size}} if data is not None else {}
        if data is None:
            raise _missing("data")
        if size > self.max_part_bytes:
            limit_mb = self.max_part_bytes // (1024 * 1024)
            raise _bad(f"Part is too large ({size} bytes). The maximum part size is {limit_mb} MB.", param="data")
        return data

    def _part_sizes(self, record: dict[str, Any]) -> dict[str, int]:
        return {part_id: len(data) for part_id, data in record["parts"].items()}

    def _joined(self, record: dict[str, Any], part_ids: list[str]) -> bytes:
        """The content of the File a completed upload makes: its parts in `part_ids` order."""
        return b"".join(record["parts"][p] for p in part_ids)

    async def _upload_complete(self, request: web.Request) -> web.Response:
        self._uploads_api_here()
        record = self._upload(request.match_info["id"])
        body = _body(request)
        self._pending(record, adding=False)
        part_ids = body.get("part_ids")
        if part_ids is None:
            raise _missing("part_ids")
        if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids):
            raise _bad("Invalid 'part_ids': expected an array of strings.", param="part_ids", code="invalid_type")
        sizes = self._part_sizes(record)
        for part_id in part_ids:
            if part_id not in sizes:
                raise _bad(f"Part {part_id} does not belong to Upload {record['object']['id']}.", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise _bad("Invalid 'part_ids': duplicate part ids.", param="part_ids")
        total, declared = sum(sizes[p] for p in part_ids), record["object"]["bytes"]
        if total != declared:
            message = (
                f"The number of bytes uploaded ({total}) does not match the bytes declared on creation ({declared})."
            )
            raise _bad(message, param="part_ids")
        content = self._joined(record, part_ids)
        md5 = body.get("md5")
        if md5 and hashlib.md5(content).hexdigest() != md5:
            raise _bad("The md5 checksum does not match the uploaded bytes.", param="md5")
        obj = record["object"]
        file_obj: dict[str, Any] = dict(id=_file_id(), object="file", bytes=total, created_at=_now(), expires_at=None)
        file_obj.update(filename=obj["filename"], purpose=obj["purpose"], status="processed", status_details=None)
        self.files[file_obj["id"]] = {"object": file_obj, "content": content}
        obj.update(status="completed", file=file_obj)
        record["parts"] = {}  # the bytes now live in the file
        self._notify()
        return web.json_response(obj)

    async def _upload_cancel(self, request: web.Request) -> web.Response:
        self._uploads_api_here()
        record = self._upload(request.match_info["id"])
        obj = record["object"]
        if obj["status"] == "completed":
            raise _bad(f"Upload {obj['id']} is already completed.")
        if obj["status"] == "pending":
            obj["status"] = "cancelled"
        record["parts"] = {}
        self._notify()
        return web.json_response(obj)

    def _conversation(self, conv_id: str, *, param: str | None = None) -> dict[str, Any]:
        record = self.conversations.get(conv_id)
        if record is None or record["deleted"]:
            raise ApiError(404, f"Conversation with id '{conv_id}' not found.", param=param)
        return record

    async def _conv_create(self, request: web.Request) -> web.Response:
        body = _body(request)
        raw_items = body.get("items") or []
        _check_item_count(raw_items, "items")
        metadata = _check_metadata(body.get("metadata"))
        obj: dict[str, Any] = {"id": _hex_id("conv_"), "object": "conversation", "created_at": _now()}
        obj["metadata"] = metadata
        self.conversations[obj["id"]] = {"object": obj, "items": _to_items(raw_items, "items"), "deleted": False}
        return web.json_response(obj)

    async def _conv_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._conversation(request.match_info["id"])["object"])

    async def _conv_update(self, request: web.Request) -> web.Response:
        record = self._conversation(request.match_info["id"])
        body = _body(request)
        if "metadata" not in body:
            raise _missing("metadata")
        record["object"]["metadata"] = _check_metadata(body["metadata"])
        return web.json_response(record["object"])

    async def _conv_delete(self, request: web.Request) -> web.Response:
        conv_id = request.match_info["id"]
        self._conversation(conv_id)["deleted"] = True
        return web.json_response({"id": conv_id, "object": "conversation.deleted", "deleted": True})

    async def _items_list(self, request: web.Request) -> web.Response:
        record = self._conversation(request.match_info["id"])
        return web.json_response(_page(record["items"], request.query))

    async def _items_create(self, request: web.Request) -> web.Response:
        record = self._conversation(request.match_info["id"])
        raw_items = _body(request).get("items")
        if raw_items is None:
            raise _missing("items")
        _check_item_count(raw_items, "items")
        items = _to_items(raw_items, "items")
        record["items"].extend(items)
        page = _page(items, {"order": "asc", "limit": str(MAX_ITEMS_PER_CALL)})
        return web.json_response(page)

    def _item(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
        record = self._conversation(request.match_info["id"])
        item_id = request.match_info["item"]
        for item in record["items"]:
            if item["id"] == item_id:
                return record, item
        raise ApiError(404, f"Item with id '{item_id}' not found.")

    async def _item_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._item(request)[1])

    async def _item_delete(self, request: web.Request) -> web.Response:
        record, item = self._item(request)
        record["items"].remove(item)
        return web.json_response(record["object"])

    def _container(self, container_id: str, *, usable: bool = False) -> dict[str, Any]:
        """Look up a container (404 if unknown); with `usable`, 400 "Container is expired." when expired.
        Every lookup of a running container refreshes its ``last_active_at``, as any operation does."""
        record = self.containers.get(container_id)
        if record is None:
            raise ApiError(404, f"Container with id '{container_id}' not found.")
        if record["object"]["status"] == "expired":
            if usable:
                raise _bad(CONTAINER_EXPIRED)
        else:
            record["object"]["last_active_at"] = _now()
        return record

    def _add_container_file(self, record: dict[str, Any], filename: str, content: bytes, source: str) -> dict[str, Any]:
        path = f"/mnt/data/{filename}"
        if source == "assistant":
            for existing in record["files"].values():
                obj = existing["object"]
                if obj["path"] == path:
                    # Code that writes a path again rewrites the one file there [unverified]: the strict
                    # reading keeps its id and changes only `bytes` and `created_at` (a bot keyed on the
                    # id alone would never post the new version).
                    obj.update(bytes=len(content), created_at=_now())
                    existing["content"] = content
                    return dict(obj)
        obj = dict(id="cfile_" + secrets.token_hex(16), object="container.file", bytes=len(content))
        obj.update(container_id=record["object"]["id"], created_at=_now(), path=path, source=source)
        record["files"][obj["id"]] = {"object": obj, "content": content}
        return obj

    def _new_container(self, name: str, *, file_ids: list[str], memory_limit: str, minutes: int) -> str:
        now = _now()
        obj: dict[str, Any] = dict(id=_hex_id("cntr_"), object="container", name=name, created_at=now, status="running")
        expires_after = {"anchor": "last_active_at", "minutes": minutes}
        obj.update(last_active_at=now, expires_after=expires_after, memory_limit=memory_limit)
        record = {"object": obj, "files": {}}
        for file_id in file_ids:
            source = self.files[file_id]
            self._add_container_file(record, source["object"]["filename"], source["content"], "user")
        self.containers[obj["id"]] = record
        return str(obj["id"])

    async def _container_create(self, request: web.Request) -> web.Response:
        body = _body(request)
        if not body.get("name"):
            raise _missing("name")
        memory_limit = body.get("memory_limit", "1g")
        if memory_limit not in MEMORY_LIMITS:
            raise _invalid_value("memory_limit", memory_limit, MEMORY_LIMITS)
        file_ids = body.get("file_ids") or []
        for file_id in file_ids:
            self._file(file_id, param="file_ids")
        minutes = (body.get("expires_after") or {}).get("minutes", 20)
        container_id = self._new_container(body["name"], file_ids=file_ids, memory_limit=memory_limit, minutes=minutes)
        obj = self.containers[container_id]["object"]
        if "network_policy" in body:
            obj["network_policy"] = body["network_policy"]
        return web.json_response(obj)

    async def _container_list(self, request: web.Request) -> web.Response:
        objs = [c["object"] for c in self.containers.values()]
        if name := request.query.get("name"):
            objs = [o for o in objs if o["name"] == name]
        return web.json_response(_page(objs, request.query))

    async def _container_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._container(request.match_info["id"])["object"])

    async def _container_delete(self, request: web.Request) -> web.Response:
        container_id = request.match_info["id"]
        self._container(container_id)
        del self.containers[container_id]
        return web.json_response({"id": container_id, "object": "container.deleted", "deleted": True})

    async def _cfile_create(self, request: web.Request) -> web.Response:
        record = self._container(request.match_info["id"], usable=True)
        if request.content_type.startswith("multipart/"):
            _, upload = await self._read_multipart(request)
            if upload is None:
                raise _missing("file")
            filename, content = upload
        else:
            file_id = _body(request).get("file_id")
            if not file_id:
                raise _missing("file_id")
            source = self._file(file_id, param="file_id")
            filename, content = source["object"]["filename"], source["content"]
        return web.json_response(self._add_container_file(record, filename, content, "user"))

    def _cfile(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
        container_id, file_id = request.match_info["id"], request.match_info["file"]
        record = self._container(container_id, usable=True)
        cfile = record["files"].get(file_id)
        if cfile is None:
            raise ApiError(404, f"File {file_id} not found on container {container_id}.")
        return record, cfile

    async def _cfile_list(self, request: web.Request) -> web.Response:
        record = self._container(request.match_info["id"], usable=True)
        return web.json_response(_page([f["object"] for f in record["files"].values()], request.query))

    async def _cfile_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._cfile(request)[1]["object"])

    async def _cfile_delete(self, request: web.Request) -> web.Response:
        record, cfile = self._cfile(request)
        del record["files"][cfile["object"]["id"]]
        return web.json_response({"id": cfile["object"]["id"], "object": "container.file.deleted", "deleted": True})

    async def _cfile_content(self, request: web.Request) -> web.Response:
        return web.Response(body=self._cfile(request)[1]["content"], content_type="application/octet-stream")

    def _response(self, response_id: str) -> dict[str, Any]:
        response = self.responses.get(response_id)
        if response is None:
            raise ApiError(404, f"Response with id '{response_id}' not found.")
        return response

    def _history(self, response_id: str | None) -> list[dict[str, Any]]:
        """Items a previous_response_id chain puts in context (oldest first)."""
        chain: list[dict[str, Any]] = []
        while response_id and response_id in self.responses:
            response = self.responses[response_id]
            chain[:0] = self._inputs.get(response_id, []) + response["output"]
            response_id = response.get("previous_response_id")
        return chain

    def _resolve_container(self, tools: list[dict[str, Any]], context: list[dict[str, Any]]) -> str | None:
        """The container the code_interpreter tool runs in: an explicit id (must exist and be running),
        or auto mode, which reuses the container of the latest code_interpreter_call in context (400
        "Container is expired." if that one expired, as reported for previous_response_id + auto) or
        creates one with the given file_ids."""
        for index, tool in enumerate(tools):
            if tool.get("type") != "code_interpreter":
                continue
            spec = tool.get("container")
            if spec is None:
                raise _missing(f"tools[{index}].container")
            if isinstance(spec, str):
                self._container(spec, usable=True)
                if self.stale_history_fails:
                    # The reported failure mode: history replaying a call from a dead container.
                    for item in context:
                        old = item.get("container_id") if item.get("type") == "code_interpreter_call" else None
                        if (
                            old
                            and old != spec
                            and self.containers.get(str(old), {}).get("object", {}).get("status") == "expired"
                        ):
                            raise _bad(f"Expected container_id: {spec}, got {old}.", param="input")
                return spec
            if spec.get("type") != "auto":
                raise _invalid_value(f"tools[{index}].container.type", spec.get("type"), ("auto",))
            file_ids = spec.get("file_ids") or []
            for file_id in file_ids:
                self._file(file_id, param=f"tools[{index}].container.file_ids")
            calls = [it for it in context if it.get("type") == "code_interpreter_call"]
            previous = str(calls[-1].get("container_id")) if calls else ""
            if previous in self.containers:
                record = self._container(previous, usable=True)
                have = {f["object"]["path"] for f in record["files"].values()}
                for file_id in file_ids:
                    source = self.files[file_id]
                    if f"/mnt/data/{source['object']['filename']}" not in have:
                        self._add_container_file(record, source["object"]["filename"], source["content"], "user")
                return previous
            memory_limit = spec.get("memory_limit") or "1g"
            return self._new_container("auto", file_ids=file_ids, memory_limit=memory_limit, minutes=20)
        return None

    async def _response_create(self, request: web.Request) -> web.StreamResponse:
        body = request[_RECORD].json
        if not isinstance(body, dict):
            raise _bad(BAD_JSON_MESSAGE)
        if not body.get("model"):
            raise _missing("model")
        conversation, previous = body.get("conversation"), body.get("previous_response_id")
        if conversation is not None and previous is not None:
            message = "Mutually exclusive parameters: Ensure you are only providing one of: "
            message += "'previous_response_id' or 'conversation'."
            raise _bad(message, code="mutually_exclusive_parameters")
        conv_id = conversation.get("id") if isinstance(conversation, dict) else conversation
        context: list[dict[str, Any]] = []
        if conv_id:
            context = self._conversation(conv_id, param="conversation")["items"]
            if conv_id in self._locked:
                raise ApiError(400, CONVERSATION_LOCKED, param="conversation", code="conversation_locked")
        if previous:
            if previous not in self.responses:
                message = f"Previous response with id '{previous}' not found."
                raise _bad(message, param="previous_response_id", code="previous_response_not_found")
            context = self._history(previous)
        metadata = _check_metadata(body.get("metadata"))
        input_items = _to_items(body.get("input"), "input")
        _check_function_outputs(context, input_items)
        tools = body.get("tools") or []
        container_id = self._resolve_container(tools, context)
        script = self.scripts.pop(0) if self.scripts else self.default_script(body)
        if script.status not in ("completed", "incomplete", "failed"):
            raise ApiError(500, f"FakeOpenAI: bad Script.status {script.status!r}", type="fake_error")
        offered = {t.get("name") for t in tools if t.get("type") == "function"}
        for call in script.function_calls:
            if call.name not in offered:
                message = f"FakeOpenAI: the Script calls {call.name!r} but the request offers no such function."
                raise ApiError(500, message, type="fake_error")
        if script.code is not None and container_id is None:
            message = "FakeOpenAI: the Script runs code but the request has no code_interpreter tool."
            raise ApiError(500, message, type="fake_error")
        response = self._new_response(body, conv_id=conv_id, tools=tools, metadata=metadata)
        include = body.get("include") or []
        obfuscate = (body.get("stream_options") or {}).get("include_obfuscation", True) is not False
        run = _Run(response, script, input_items, conv_id, container_id, include, obfuscate)
        if conv_id:
            self._locked.add(conv_id)
        if body.get("store", True) is not False:
            self.responses[response["id"]] = response
        self._inputs[response["id"]] = input_items
        if body.get("stream"):
            return await self._stream(request, run)
        if response["background"]:
            snapshot = copy.deepcopy(response)
            self._tasks[response["id"]] = asyncio.create_task(self._drain(run))
            return web.json_response(snapshot)
        error = await self._drain(run)
        if error is not None:
            raise ApiError(500, error["message"], type="server_error", param=error.get("param"), code=error.get("code"))
        return web.json_response(response)

    def _new_response(
        self, body: dict[str, Any], *, conv_id: str | None, tools: list[Any], metadata: dict[str, str]
    ) -> dict[str, Any]:
        """A Response object with every key the API sends; request values are echoed, defaults as on the API."""
        background = bool(body.get("background", False))
        response: dict[str, Any] = dict(id=_hex_id("resp_"), object="response", created_at=_now(), model=body["model"])
        response.update(status="queued" if background else "in_progress", background=background, completed_at=None)
        response.update(conversation={"id": conv_id} if conv_id else None, error=None, incomplete_details=None)
        response.update(metadata=metadata, output=[], tools=tools, top_logprobs=0, usage=None, user=None)
        echoed = ("instructions", "max_output_tokens", "max_tool_calls", "previous_response_id", "prompt_cache_key")
        response.update({key: body.get(key) for key in (*echoed, "safety_identifier")})
        defaults: dict[str, Any] = dict(
            parallel_tool_calls=True, service_tier="default", store=True, temperature=1.0, top_p=1.0
        )
        defaults.update(tool_choice="auto", truncation="disabled")
        response.update({key: body.get(key, value) for key, value in defaults.items()})
        response["reasoning"] = body.get("reasoning") or {"effort": None, "summary": None}
        response["text"] = body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"}
        return response

    async def _stream(self, request: web.Request, run: _Run) -> web.StreamResponse:
        """Write the run's events as SSE. A client disconnect cancels this handler, which stops the run."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks[run.response["id"]] = task
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        sse = web.StreamResponse(headers={**headers, "x-request-id": request[_REQUEST_ID]})
        await sse.prepare(request)
        sequence = 0
        try:
            async with contextlib.aclosing(self._events(run)) as events:
                async for event in events:
                    event["sequence_number"] = sequence
                    sequence += 1
                    await sse.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                    if run.script.delay_s:
                        await asyncio.sleep(run.script.delay_s)
            await sse.write_eof()
        except ConnectionResetError:
            pass
        return sse

    async def _drain(self, run: _Run) -> dict[str, Any] | None:
        """Run a response without a stream; return the bare error event if the script sent one."""
        error = None
        async with contextlib.aclosing(self._events(run)) as events:
            async for event in events:
                if event["type"] == "error":
                    error = event
                if run.script.delay_s:
                    await asyncio.sleep(run.script.delay_s)
        return error

    def _finish(self, run: _Run, *, persist: bool) -> None:
        """Settle state before the terminal event goes out, so a client reacting to it sees the
        conversation updated and unlocked."""
        run.finished = True
        if persist and run.conversation_id in self.conversations:
            items = self.conversations[run.conversation_id]["items"]
            items.extend(copy.deepcopy(run.input_items + run.response["output"]))
        self._locked.discard(run.conversation_id or "")
        self._notify()

    def _usage(self, run: _Run, text: str) -> dict[str, Any]:
        input_tokens = len(_text_of(run.input_items)) // 4 + 1
        output_tokens = len(text) // 4 + 1 + len("".join(_codes(run.script))) // 4
        usage: dict[str, Any] = dict(input_tokens=input_tokens, output_tokens=output_tokens)
        usage["input_tokens_details"] = {"cached_tokens": 0, "cache_write_tokens": 0}
        usage["output_tokens_details"] = {"reasoning_tokens": 16 if run.script.reasoning else 0}
        usage["total_tokens"] = input_tokens + output_tokens
        usage.update(run.script.usage or {})
        return usage

    async def _events(self, run: _Run) -> AsyncGenerator[dict[str, Any], None]:
        """The run's SSE events in the real order (reference §4), without sequence numbers. Each event
        is serialised before the next is produced, so live dicts can be yielded."""
        response, script = run.response, run.script
        output = response["output"]
        self.active_streams += 1
        self._notify()
        try:
            if response["background"]:
                yield _ev("response.queued", response=response)
            response["status"] = "in_progress"
            yield _ev("response.created", response=response)
            yield _ev("response.in_progress", response=response)
            if script.reasoning:
                output.append(dict(id=_item_id("reasoning"), type="reasoning", summary=[]))
                yield _ev("response.output_item.added", output_index=len(output) - 1, item=output[-1])
                yield _ev("response.output_item.done", output_index=len(output) - 1, item=output[-1])
            cited: list[dict[str, Any]] = []
            limit = response.get("max_tool_calls")
            for index, code in enumerate(_codes(script)[:limit]):
                async for event in self._code_events(run, cited, code, first=index == 0):
                    yield event
            text, annotations = script.text, []
            for cfile in cited:
                link = f"sandbox:/mnt/data/{cfile['filename']}"
                text += f"\n\n[{cfile.pop('label') or cfile['filename']}]({link})"
                start = len(text) - len(link) - 1
                annotation = dict(type="container_file_citation", container_id=run.container_id, **cfile)
                annotations.append({**annotation, "start_index": start, "end_index": start + len(link)})
            if script.function_calls and not text:
                async for event in self._function_call_events(run):
                    yield event
                response.update(status=script.status, usage=self._usage(run, text))
                response["completed_at"] = _now()
                self._finish(run, persist=True)
                yield _ev("response.completed", response=response)
                return
            message: dict[str, Any] = dict(
                id=_item_id("message"), type="message", status="in_progress", content=[], role="assistant"
            )
            output.append(message)
            at = {"item_id": message["id"], "output_index": len(output) - 1, "content_index": 0}
            yield _ev("response.output_item.added", output_index=at["output_index"], item=message)
            part: dict[str, Any] = dict(type="output_text", annotations=[], logprobs=[], text="")
            yield _ev("response.content_part.added", **at, part=part)
            message["content"].append(part)
            held = False
            for piece in _chunks(text, TEXT_DELTA_CHARS) or [""]:
                if piece:
                    part["text"] += piece
                    yield _ev("response.output_text.delta", **at, delta=piece, logprobs=[], **run.obfuscation(piece))
                if script.hold is not None and not held and len(part["text"]) >= script.hold_after_chars:
                    held = True
                    await script.hold.wait()
            if script.error_event is not None or script.status == "failed":
                self._finish(run, persist=False)
                response.update(status="failed", error={"code": "server_error", "message": SERVER_ERROR_MESSAGE})
                if script.error_event is not None:
                    error = dict(code="server_error", message=SERVER_ERROR_MESSAGE, param=None)
                    yield _ev("error", **{**error, **script.error_event})
                else:
                    yield _ev("response.failed", response=response)
                return
            for index, annotation in enumerate(annotations):
                part["annotations"].append(annotation)
                yield _ev("response.output_text.annotation.added", **at, annotation_index=index, annotation=annotation)
            yield _ev("response.output_text.done", **at, text=text, logprobs=[])
            yield _ev("response.content_part.done", **at, part=part)
            message["status"] = script.status
            yield _ev("response.output_item.done", output_index=at["output_index"], item=message)
            async for event in self._function_call_events(run):
                yield event
            response.update(status=script.status, usage=self._usage(run, text))
            if script.status == "completed":
                response["completed_at"] = _now()
            else:
                response["incomplete_details"] = {"reason": script.incomplete_reason}
            self._finish(run, persist=True)
            yield _ev(f"response.{script.status}", response=response)
        finally:
            self.active_streams -= 1
            if not run.finished:
                # Client went away or the run was cancelled: nothing reaches the conversation.
                response["status"] = "cancelled"
                self._finish(run, persist=False)
            self._notify()

    async def _function_call_events(self, run: _Run) -> AsyncGenerator[dict[str, Any], None]:
        """Events of the script's function calls: item added, argument deltas, arguments done, item done."""
        output = run.response["output"]
        for call in run.script.function_calls:
            item: dict[str, Any] = dict(id=_item_id("function_call"), type="function_call", status="in_progress")
            item.update(arguments="", call_id=_hex_id("call_")[:29], name=call.name)
            output.append(item)
            at = {"item_id": item["id"], "output_index": len(output) - 1}
            yield _ev("response.output_item.added", output_index=at["output_index"], item=item)
            for piece in _chunks(call.arguments, CODE_DELTA_CHARS):
                item["arguments"] += piece
                yield _ev("response.function_call_arguments.delta", **at, delta=piece, **run.obfuscation(piece))
            yield _ev("response.function_call_arguments.done", **at, name=call.name, arguments=call.arguments)
            item["status"] = "completed"
            yield _ev("response.output_item.done", output_index=at["output_index"], item=item)

    async def _code_events(
        self, run: _Run, cited: list[dict[str, Any]], code: str, *, first: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Events of one code_interpreter_call running `code`; the `first` one writes the script's files
        to the container (cited ones appended to `cited` as ``{"file_id", "filename"}``) and shows its
        logs and images."""
        script, output = run.script, run.response["output"]
        item: dict[str, Any] = dict(
            id=_item_id("code_interpreter_call"), type="code_interpreter_call", status="in_progress"
        )
        item.update(code="", container_id=run.container_id, outputs=None)
        output.append(item)
        at = {"item_id": item["id"], "output_index": len(output) - 1}
        yield _ev("response.output_item.added", output_index=at["output_index"], item=item)
        yield _ev("response.code_interpreter_call.in_progress", **at)
        for piece in _chunks(code, CODE_DELTA_CHARS):
            item["code"] += piece
            yield _ev("response.code_interpreter_call_code.delta", **at, delta=piece, **run.obfuscation(piece))
        yield _ev("response.code_interpreter_call_code.done", **at, code=code)
        item["status"] = "interpreting"
        yield _ev("response.code_interpreter_call.interpreting", **at)
        record = self.containers.get(run.container_id or "")
        for generated in script.files if first else []:
            if record is None:
                break
            cfile = self._add_container_file(record, generated.filename, generated.content, "assistant")
            if generated.cite:
                cited.append({"file_id": cfile["id"], "filename": generated.filename, "label": generated.label})
        item["status"] = "completed"
        yield _ev("response.code_interpreter_call.completed", **at)
        if INCLUDE_CODE_OUTPUTS in run.include:
            outputs: list[dict[str, str]] = [{"type": "logs", "logs": script.logs}] if script.logs and first else []
            for png in script.image_outputs if first else []:
                outputs.append({"type": "image", "url": "data:image/png;base64," + base64.b64encode(png).decode()})
            item["outputs"] = outputs
        yield _ev("response.output_item.done", output_index=at["output_index"], item=item)

    async def _response_get(self, request: web.Request) -> web.Response:
        response = self._response(request.match_info["id"])
        if request.query.get("stream") == "true":
            raise _bad("FakeOpenAI does not support resuming streams (GET ?stream=true).", param="stream")
        return web.json_response(response)

    async def _response_delete(self, request: web.Request) -> web.Response:
        response_id = request.match_info["id"]
        self._response(response_id)
        del self.responses[response_id]
        # The API reference's example: the object is "response" (the SDK's delete() returns None).
        return web.json_response({"id": response_id, "object": "response", "deleted": True})

    async def _response_cancel(self, request: web.Request) -> web.Response:
        """Only background responses can be cancelled; terminal ones are returned unchanged."""
        response_id = request.match_info["id"]
        response = self._response(response_id)
        if not response["background"]:
            raise _bad("Cannot cancel a synchronous response.")
        task = self._tasks.get(response_id)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        return web.json_response(response)

    async def _response_input_items(self, request: web.Request) -> web.Response:
        response_id = request.match_info["id"]
        self._response(response_id)
        return web.json_response(_page(self._inputs.get(response_id, []), request.query))
