"""Stage 2 of a turn: the thread's OpenAI conversation and a live container holding all its files."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.analysis.workspace import Workspace, assign_paths
from bot.domain import Session, ThreadFile, ThreadKey
from bot.errors import OpenAIProblem
from bot.store import Store
from bot.turn.chart_font import FONT_FILENAME, ChartFonts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Environment:
    """Where a turn runs: `reset` is True when the container was replaced since the last turn.

    `container_id` is None while the thread holds no file: the turn runs without code interpreter.
    `paths` maps the thread's file names to their container paths (empty when the container could not
    be listed; the prompt then assumes `/mnt/data/<name>`). `containers_created` counts the containers
    made while preparing it (each is billed from creation). `font_path` is where the chart font is in the
    container (None when it could not be put there); it is never one of the user's files.
    """

    conversation_id: str
    container_id: str | None
    reset: bool = False
    paths: Mapping[str, str] = field(default_factory=dict)
    containers_created: int = 0
    font_path: str | None = None


def _unique(files: Sequence[ThreadFile]) -> list[ThreadFile]:
    """One entry per upload: a re-shared file (same bytes) shares the first one's upload."""
    return list({f.openai_file_id: f for f in reversed(files)}.values())[::-1]


class Environments:
    """Finds or makes each thread's conversation and container, and records them in the store."""

    def __init__(self, *, store: Store, workspace: Workspace, fonts: ChartFonts | None = None) -> None:
        self._store = store
        self._workspace = workspace
        self._fonts = fonts

    async def prepare(self, session: Session, files: Sequence[ThreadFile], new_ids: set[str]) -> Environment:
        """The thread's conversation (created on first use) and its live container with all `files`.

        A live container is listed once (which also gives the prompt its paths) and every recorded file
        it lacks is added, whether it is new this turn or an earlier add failed or was cut short. A thread
        without files gets no container (containers are billed by the minute from creation, whether or
        not code runs); its first file creates one.
        """
        conversation_id = session.conversation_id
        if conversation_id is None:
            conversation_id = await self._workspace.create_conversation(session.thread)
            await self._store.update_session(session.thread, conversation_id=conversation_id)
        if not files:
            return Environment(conversation_id, None)
        if session.container_id and await self._workspace.live_container(session.container_id):
            paths, font_path = await self._complete(session.container_id, files, new_ids)
            return Environment(conversation_id, session.container_id, paths=paths, font_path=font_path)
        container_id, paths, font_path = await self.new_container(session.thread, files)
        return Environment(
            conversation_id,
            container_id,
            reset=session.container_id is not None,
            paths=paths,
            containers_created=1,
            font_path=font_path,
        )

    async def _complete(
        self, container_id: str, files: Sequence[ThreadFile], new_ids: set[str]
    ) -> tuple[dict[str, str], str | None]:
        """Add the files (and the chart font) the container lacks; returns the paths of the thread's files
        in it and the font's path."""
        unique = _unique(files)
        if not unique:
            return {}, None
        listed = await self._listed(container_id)
        if listed is None:
            # Cannot tell what is there: add what is new this turn (earlier files were added on their turn).
            for file in unique:
                if file.slack_file_id in new_ids:
                    await self._workspace.add_file_to_container(container_id, file.openai_file_id)
            return {}, None
        paths = assign_paths([f.filename for f in unique], listed)
        for file in unique:
            if file.filename not in paths:
                if file.slack_file_id not in new_ids:
                    log.info("file %s is missing from container %s; adding it", file.openai_file_id, container_id)
                path = await self._workspace.add_file_to_container(container_id, file.openai_file_id)
                paths[file.filename] = path
        font_path = _font_path(listed, paths)
        if font_path is None and self._fonts is not None and (font := await self._fonts.ensure()) is not None:
            # A container made before the font was offered: add it now.
            font_path = await self._workspace.add_file_to_container(container_id, font.file_id)
        return paths, font_path

    async def _listed(self, container_id: str) -> list[str] | None:
        try:
            return await self._workspace.user_file_paths(container_id)
        except OpenAIProblem as err:
            log.warning("could not list files of container %s: %s; assuming /mnt/data/<name>", container_id, err.detail)
            return None

    async def new_container(
        self, thread: ThreadKey, files: Sequence[ThreadFile]
    ) -> tuple[str, dict[str, str], str | None]:
        """A fresh container with all of the thread's files (each upload once) and the chart font, recorded
        as the thread's; returns its id, the files' paths in it and the font's path (None without a font)."""
        return await self._new_container(thread, files)

    async def _new_container(
        self, thread: ThreadKey, files: Sequence[ThreadFile]
    ) -> tuple[str, dict[str, str], str | None]:
        unique = _unique(files)
        font = await self._fonts.ensure() if self._fonts is not None else None
        file_ids = [f.openai_file_id for f in unique] + ([font.file_id] if font else [])
        container_id = await self._workspace.create_container(thread, file_ids)
        await self._store.update_session(thread, container_id=container_id)
        listed = await self._listed(container_id) if file_ids else []
        paths = assign_paths([f.filename for f in unique], listed or [])
        font_path = (_font_path(listed or [], paths) or f"/mnt/data/{FONT_FILENAME}") if font else None
        return container_id, paths, font_path

    async def fresh_conversation(self, thread: ThreadKey, old_conversation_id: str) -> str:
        """A new conversation seeded with the old one's latest messages, recorded as the thread's.

        For a conversation whose history points at a container that no longer exists.
        """
        transcript = await self._workspace.transcript(old_conversation_id)
        seed = (
            "This Slack thread continues from an earlier conversation whose analysis environment expired. "
            f"The latest messages were:\n\n{transcript}"
            if transcript
            else None
        )
        conversation_id = await self._workspace.create_conversation(thread, seed=seed)
        await self._store.update_session(thread, conversation_id=conversation_id)
        return conversation_id


def _font_path(listed: Sequence[str], taken: Mapping[str, str]) -> str | None:
    """The chart font's path among the container's `listed` paths that are not a user file's."""
    free = [path for path in listed if path not in set(taken.values())]
    return assign_paths([FONT_FILENAME], free).get(FONT_FILENAME)
