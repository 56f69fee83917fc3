"""The OpenAI files of the deployment itself (not of a thread), by name: which upload to reuse."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StoreUnavailable
from bot.store.tables import deployment_files


@dataclass(frozen=True)
class DeploymentFile:
    """An upload of the deployment's file `name` with content hash `sha256`."""

    name: str
    openai_file_id: str
    sha256: str


class DeploymentFiles:
    """Reads and records deployment files through `engine`. Raises `StoreUnavailable` when the database fails."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def get(self, name: str) -> DeploymentFile | None:
        """The recorded upload of `name`, or None."""
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(sa.select(deployment_files).where(deployment_files.c.name == name))).first()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"deployment file {name}: {exc.__class__.__name__}: {exc}") from exc
        return None if row is None else DeploymentFile(row.name, row.openai_file_id, row.sha256)

    async def put(self, file: DeploymentFile) -> None:
        """Record `file` as the upload of its name (replacing an earlier one)."""
        values = {"openai_file_id": file.openai_file_id, "sha256": file.sha256, "created_at": self._clock()}
        try:
            async with self._engine.begin() as conn:
                updated = await conn.execute(
                    sa.update(deployment_files).where(deployment_files.c.name == file.name).values(**values)
                )
                if updated.rowcount == 0:
                    await conn.execute(sa.insert(deployment_files).values(name=file.name, **values))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"deployment file {file.name}: {exc.__class__.__name__}: {exc}") from exc
