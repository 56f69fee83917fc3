"""The chart font: a Hangul font uploaded to OpenAI once per deployment and put into every container.

The font comes from the `pylopdf-fonts-ko` package (Noto Sans KR Regular, SIL Open Font License 1.1; the
licence ships in the package's metadata), read with importlib.resources at run time, so no font file is
committed here. Its OpenAI file id is kept in the `deployment_files` table and reused while OpenAI still has
the file (checked with files.retrieve before each new container); a file OpenAI lost is uploaded again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import logging
from dataclasses import dataclass

from bot.analysis.workspace import Workspace
from bot.errors import BotError
from bot.store.deployment_files import DeploymentFile, DeploymentFiles

log = logging.getLogger(__name__)

FONT_PACKAGE = "pylopdf_fonts_ko"
FONT_FILENAME = "NotoSansKR-Regular.otf"
FONT_FAMILY = "Noto Sans KR"
DEPLOYMENT_NAME = "chart_font"


@dataclass(frozen=True)
class ChartFont:
    """The uploaded font: its OpenAI file id, the name it gets in a container and its family name."""

    file_id: str
    filename: str = FONT_FILENAME
    family: str = FONT_FAMILY


def font_bytes() -> bytes:
    """The font file's bytes from the installed package."""
    return importlib.resources.files(FONT_PACKAGE).joinpath(FONT_FILENAME).read_bytes()


def font_note(path: str, *, family: str = FONT_FAMILY) -> str:
    """What each turn's input tells the model about the font (also under a custom BOT_INSTRUCTIONS)."""
    return (
        f"A font with Hangul glyphs ({family}) is at {path}; it is not a data file. Before drawing a chart "
        "with Korean text, register it: `from matplotlib import font_manager; import matplotlib.pyplot as plt; "
        f"font_manager.fontManager.addfont('{path}'); plt.rcParams['font.family'] = '{family}'; "
        "plt.rcParams['axes.unicode_minus'] = False`."
    )


class ChartFonts:
    """Finds or uploads the deployment's chart font; one check or upload at a time in this process."""

    def __init__(self, *, files: DeploymentFiles, workspace: Workspace) -> None:
        self._files = files
        self._workspace = workspace
        self._lock = asyncio.Lock()
        self._sha256: str | None = None

    async def ensure(self) -> ChartFont | None:
        """The font's upload, checked to still exist at OpenAI (uploaded again when gone); None when the
        font could not be had (the turn then runs without it: charts only lose their Hangul)."""
        async with self._lock:
            try:
                return await self._ensure()
            except (BotError, OSError, ModuleNotFoundError) as err:
                log.warning("chart font unavailable; containers get none: %s", err)
                return None

    async def _ensure(self) -> ChartFont:
        data: bytes | None = None
        if self._sha256 is None:
            data = await asyncio.to_thread(font_bytes)
            self._sha256 = hashlib.sha256(data).hexdigest()
        recorded = await self._files.get(DEPLOYMENT_NAME)
        if (
            recorded is not None
            and recorded.sha256 == self._sha256
            and await self._workspace.file_exists(recorded.openai_file_id)
        ):
            return ChartFont(recorded.openai_file_id)
        if data is None:
            data = await asyncio.to_thread(font_bytes)
        file_id = await self._workspace.upload_bytes(data, filename=FONT_FILENAME)
        log.info("chart font %s uploaded as %s", FONT_FILENAME, file_id)
        await self._files.put(DeploymentFile(DEPLOYMENT_NAME, file_id, self._sha256))
        return ChartFont(file_id)
