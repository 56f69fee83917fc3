"""Stage 2 of a turn: the thread's OpenAI conversation and a live container holding all its files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.analysis.workspace import Workspace
from bot.domain import Session, ThreadFile, ThreadKey
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Environment:
    """Where a turn runs: `reset` is True when the container was replaced since the last turn."""

    conversation_id: str
    container_id: str
    reset: bool = False


class Environments:
    """Finds or makes each thread's conversation and container, and records them in the store."""

    def __init__(self, *, store: Store, workspace: Workspace) -> None:
        self._store = store
        self._workspace = workspace

    async def prepare(self, session: Session, files: Sequence[ThreadFile], new_ids: set[str]) -> Environment:
        """The thread's conversation (created on first use) and its live container with all `files`."""
        conversation_id = session.conversation_id
        if conversation_id is None:
            conversation_id = await self._workspace.create_conversation(session.thread)
            await self._store.update_session(session.thread, conversation_id=conversation_id)
        if session.container_id and await self._workspace.live_container(session.container_id):
            for file in files:
                if file.slack_file_id in new_ids:
                    await self._workspace.add_file_to_container(session.container_id, file.openai_file_id)
            return Environment(conversation_id, session.container_id)
        container_id = await self.new_container(session.thread, files)
        return Environment(conversation_id, container_id, reset=session.container_id is not None)

    async def new_container(self, thread: ThreadKey, files: Sequence[ThreadFile]) -> str:
        """A fresh container with all of the thread's files (each upload once), recorded as the thread's."""
        file_ids = list(dict.fromkeys(f.openai_file_id for f in files))  # a re-shared file is uploaded once
        container_id = await self._workspace.create_container(thread, file_ids)
        await self._store.update_session(thread, container_id=container_id)
        return container_id

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
