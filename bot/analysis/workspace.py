"""OpenAI-side state of a thread: its conversation, its code-interpreter container and files in them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import openai

from bot.analysis.openai_errors import convert, is_missing_endpoint
from bot.domain import ThreadKey
from bot.errors import FileUploadFailed

log = logging.getLogger(__name__)

CONTAINER_IDLE_MINUTES = 20
# Parts of one file on their way to OpenAI at once: with the part being filled, bounds the memory a file
# takes, and a slow OpenAI slows the download instead of letting parts pile up.
PARTS_IN_FLIGHT = 2
# How long cancelling an Upload may take when a file is given up (the Upload expires unused after an hour
# anyway: it never becomes a File without `complete`).
CANCEL_UPLOAD_TIMEOUT_S = 10.0
TRANSCRIPT_MAX_CHARS = 12_000
_TEXT_PARTS = {"input_text", "output_text", "text"}


@dataclass(frozen=True)
class GeneratedFile:
    """A file the model wrote in the container."""

    container_id: str
    file_id: str
    filename: str
    created_at: int
    size_bytes: int = 0

    @property
    def version(self) -> str:
        """What identifies this version of the file: code that rewrites a path may keep the file's id,
        but its size and creation time describe the latest write."""
        return f"{self.file_id}:{self.size_bytes}:{self.created_at}"


def assign_paths(filenames: Sequence[str], paths: Sequence[str]) -> dict[str, str]:
    """Match each uploaded file name to its container path (OpenAI chooses the path); unmatched names
    are left out. A path whose name is the file name wins; then a path that carries a prefix before the
    name (`<id>-name.csv`). Each path is given to one name only."""
    found: dict[str, str] = {}
    free = list(paths)
    for prefixed in (False, True):
        for name in filenames:
            if name in found:
                continue
            for path in free:
                base = PurePosixPath(path).name
                if base.endswith(f"-{name}") if prefixed else base == name:
                    found[name] = path
                    free.remove(path)
                    break
    return found


class UploadsUnavailable(Exception):
    """The OpenAI endpoint has no Uploads API (an OpenAI-compatible gateway): files go whole through
    `Workspace.upload_file` instead."""


class FileUpload:
    """One file on its way to OpenAI through the Uploads API, sent part by part while the caller still reads it.

    Made by `Workspace.file_upload`. `add` hands over the next part; `complete` makes the File (only then does
    a usable file exist). Raises `FileUploadFailed` for anything OpenAI refuses.
    """

    def __init__(self, client: openai.AsyncOpenAI, upload_id: str, *, filename: str) -> None:
        self.id = upload_id
        self._client = client
        self._filename = filename
        self._part_ids: list[str | None] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._room = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self._failure: FileUploadFailed | None = None
        self.completed = False

    async def add(self, data: bytes) -> None:
        """Start sending `data` as the next part; returns once it is on its way and fewer than
        `PARTS_IN_FLIGHT` parts are in flight (raises the failure of an earlier part)."""
        self._raise_failure()
        await self._room.acquire()
        self._raise_failure()
        index = len(self._part_ids)
        self._part_ids.append(None)
        self._tasks.append(asyncio.create_task(self._send(index, data)))

    async def _send(self, index: int, data: bytes) -> None:
        try:
            part = await self._client.uploads.parts.create(self.id, data=data)
            self._part_ids[index] = part.id
        except openai.OpenAIError as exc:
            if self._failure is None:
                err = convert(exc)
                self._failure = FileUploadFailed(self._filename, f"part {index}: {err}", request_id=err.request_id)
        finally:
            self._room.release()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def complete(self) -> str:
        """Wait for every part, then complete the Upload with the parts in the order they were added;
        returns the new File's id."""
        await asyncio.gather(*self._tasks)
        self._raise_failure()
        part_ids = [p for p in self._part_ids if p is not None]
        assert len(part_ids) == len(self._part_ids), "every part sent or failed"
        try:
            done = await self._client.uploads.complete(self.id, part_ids=part_ids)
        except openai.OpenAIError as exc:
            err = convert(exc)
            raise FileUploadFailed(self._filename, f"complete: {err}", request_id=err.request_id) from exc
        if done.status != "completed" or done.file is None:
            raise FileUploadFailed(self._filename, f"upload {self.id} is {done.status} after complete")
        self.completed = True
        return done.file.id

    async def cancel(self) -> None:
        """Stop the parts still in flight and cancel the Upload at OpenAI (best effort: an Upload never
        completed expires unused after an hour, so a failure here is logged, not raised)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(CANCEL_UPLOAD_TIMEOUT_S):
                await self._client.uploads.cancel(self.id)
        except (openai.OpenAIError, TimeoutError) as exc:
            log.warning("upload %s not cancelled (it expires unused): %s", self.id, exc.__class__.__name__)


class Workspace:
    """Conversations, containers and files for threads, through one `AsyncOpenAI` client."""

    def __init__(self, client: openai.AsyncOpenAI, *, memory_limit: str = "4g") -> None:
        self._client = client
        self._memory_limit = memory_limit
        # False once the endpoint turned out to have no Uploads API: big files then go whole, no Upload tried.
        self.uploads_available = True

    async def create_conversation(self, thread: ThreadKey, *, seed: str | None = None) -> str:
        """A new conversation tagged with the Slack thread (starting with `seed` text); returns its id."""
        extra: dict[str, Any] = {}
        if seed:
            extra["items"] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": seed}]}]
        try:
            conversation = await self._client.conversations.create(
                **extra,
                metadata={
                    "slack_team": thread.team_id,
                    "slack_channel": thread.channel,
                    "slack_thread_ts": thread.thread_ts,
                },
            )
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return conversation.id

    async def transcript(self, conversation_id: str, *, max_chars: int = TRANSCRIPT_MAX_CHARS) -> str:
        """The latest user and assistant messages of a conversation as plain text, oldest first."""
        lines: list[str] = []
        size = 0
        try:
            page = await self._client.conversations.items.list(conversation_id, order="desc", limit=100)
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        for item in page.data:
            if item.type != "message":
                continue
            text = " ".join(
                str(getattr(part, "text", "")) for part in item.content if getattr(part, "type", "") in _TEXT_PARTS
            ).strip()
            if not text:
                continue
            line = f"{item.role}: {text}"
            if size + len(line) > max_chars:
                break
            lines.append(line)
            size += len(line)
        return "\n\n".join(reversed(lines))

    async def live_container(self, container_id: str) -> bool:
        """True if the container still runs (this also refreshes its idle timer)."""
        try:
            container = await self._client.containers.retrieve(container_id)
        except openai.NotFoundError:
            return False
        except openai.BadRequestError as exc:
            log.info("container %s unusable: %s", container_id, exc.message)
            return False
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return container.status == "running"

    async def create_container(self, thread: ThreadKey, file_ids: Sequence[str]) -> str:
        """A new container holding `file_ids` under /mnt/data; returns its id."""
        name = f"slack-{thread.channel}-{thread.thread_ts}"
        try:
            container = await self._client.containers.create(
                name=name,
                file_ids=list(file_ids),
                memory_limit=self._memory_limit,  # type: ignore[arg-type]
                expires_after={"anchor": "last_active_at", "minutes": CONTAINER_IDLE_MINUTES},
            )
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        log.info("container %s created for %s with %d files", container.id, name, len(file_ids))
        return container.id

    async def add_file_to_container(self, container_id: str, file_id: str) -> str:
        """Copy an uploaded file into a container; returns its path there."""
        try:
            created = await self._client.containers.files.create(container_id, file_id=file_id)
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return created.path

    async def upload_file(self, path: Path, *, filename: str) -> str:
        """Upload a local file to the Files API (`purpose="user_data"`); returns the file id."""
        try:
            with path.open("rb") as fh:
                created = await self._client.files.create(file=(filename, fh), purpose="user_data")
        except openai.OpenAIError as exc:
            err = convert(exc)
            raise FileUploadFailed(filename, str(err), request_id=err.request_id) from exc
        return created.id

    @contextlib.asynccontextmanager
    async def file_upload(self, *, filename: str, size_bytes: int, mime_type: str) -> AsyncIterator[FileUpload]:
        """An Upload of exactly `size_bytes` (`purpose="user_data"`) to send a file in parts while it is read.

        Unless `FileUpload.complete` succeeded inside the block, the Upload is cancelled on the way out, also
        when the block raises or its task is cancelled (a Stop, a shutdown): nothing half-sent becomes a File.
        Raises `FileUploadFailed` when OpenAI refuses the Upload, `UploadsUnavailable` when the endpoint has no
        Uploads API (then `uploads_available` turns False: send files whole with `upload_file`).
        """
        try:
            created = await self._client.uploads.create(
                bytes=size_bytes, filename=filename, mime_type=mime_type, purpose="user_data"
            )
        except openai.OpenAIError as exc:
            if is_missing_endpoint(exc):
                self.uploads_available = False
                raise UploadsUnavailable(f"POST /uploads: {exc.__class__.__name__}") from exc
            err = convert(exc)
            raise FileUploadFailed(filename, f"upload: {err}", request_id=err.request_id) from exc
        upload = FileUpload(self._client, created.id, filename=filename)
        try:
            yield upload
        finally:
            if not upload.completed:
                await upload.cancel()

    async def upload_bytes(self, data: bytes, *, filename: str) -> str:
        """Upload bytes to the Files API (`purpose="user_data"`); returns the file id.

        Raises our `OpenAIProblem` on failure.
        """
        try:
            created = await self._client.files.create(file=(filename, data), purpose="user_data")
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return created.id

    async def file_exists(self, file_id: str) -> bool:
        """True while OpenAI still has the uploaded file (False on 404); raises our `OpenAIProblem` otherwise."""
        try:
            await self._client.files.retrieve(file_id)
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return True

    async def user_file_paths(self, container_id: str) -> list[str]:
        """The container paths of the files put into it for users (`source == "user"`), oldest first."""
        try:
            return [
                item.path
                async for item in self._client.containers.files.list(container_id, order="asc", limit=100)
                if item.source == "user"
            ]
        except openai.OpenAIError as exc:
            raise convert(exc) from exc

    async def generated_files(self, container_id: str) -> list[GeneratedFile]:
        """Files the model created in the container (`source == "assistant"`), oldest first."""
        found: list[GeneratedFile] = []
        try:
            async for item in self._client.containers.files.list(container_id, order="asc", limit=100):
                if item.source == "assistant":
                    found.append(
                        GeneratedFile(
                            container_id=container_id,
                            file_id=item.id,
                            filename=Path(item.path).name,
                            created_at=item.created_at,
                            size_bytes=item.bytes,
                        )
                    )
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return found

    async def generated_file(self, container_id: str, file_id: str) -> GeneratedFile:
        """One file of a container, as it is now."""
        try:
            item = await self._client.containers.files.retrieve(file_id, container_id=container_id)
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return GeneratedFile(
            container_id=container_id,
            file_id=item.id,
            filename=Path(item.path).name,
            created_at=item.created_at,
            size_bytes=item.bytes,
        )

    async def download(self, container_id: str, file_id: str) -> bytes:
        """The bytes of a file in a container."""
        try:
            content = await self._client.containers.files.content.retrieve(file_id, container_id=container_id)
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return content.content

    # ---- deletion (retention and forget) ------------------------------------------------------------

    async def delete(self, kind: str, object_id: str) -> bool:
        """Delete one thread object at OpenAI: `kind` is "file", "container", "conversation" or "response".

        Returns True when it was deleted now, False when OpenAI no longer has it (404: also done).
        A conversation's items are deleted first (deleting a conversation leaves its items).
        Raises our `OpenAIProblem` for any other failure (the caller retries later).
        """
        try:
            if kind == "file":
                await self._client.files.delete(object_id)
            elif kind == "container":
                await self._client.containers.delete(object_id)
            elif kind == "response":
                await self._client.responses.delete(object_id)
            elif kind == "conversation":
                await self._delete_conversation(object_id)
            else:
                raise ValueError(f"unknown OpenAI object kind {kind!r}")
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:
            raise convert(exc) from exc
        return True

    async def _delete_conversation(self, conversation_id: str) -> None:
        # Deleting an item while paging would shift the pages: collect the ids first.
        item_ids = [
            item.id async for item in self._client.conversations.items.list(conversation_id, limit=100) if item.id
        ]
        for item_id in item_ids:
            try:
                await self._client.conversations.items.delete(item_id, conversation_id=conversation_id)
            except openai.NotFoundError:
                continue
        await self._client.conversations.delete(conversation_id)
