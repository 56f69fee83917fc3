"""Stage 4 of a turn: the charts and files the model made, uploaded to the thread once each."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from bot.analysis.workspace import GeneratedFile, Workspace
from bot.errors import BotError, OpenAIProblem
from bot.events import FileCited, ImageOutput, TurnDone
from bot.i18n import Language, t
from bot.slack.render import sandbox_link_labels
from bot.store import Store
from bot.turn.sink import AnswerSink

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}


@dataclass
class Outputs:
    """Files the response produced, in the order the answer mentions them."""

    cited: list[FileCited] = field(default_factory=list)
    images: list[ImageOutput] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # the raw answer, for file titles


class OutputDelivery:
    """Uploads a turn's outputs; the store remembers what was delivered so nothing is posted twice."""

    def __init__(self, *, store: Store, workspace: Workspace) -> None:
        self._store = store
        self._workspace = workspace

    async def deliver(self, reply: AnswerSink, lang: Language, done: TurnDone, outputs: Outputs) -> None:
        """Upload every file and image the model produced this turn, once, cited ones first.

        A file is remembered by its version (`GeneratedFile.version`): one the model rewrote under the same
        path in a later turn is posted again, an unchanged one never twice. An image a run displayed is
        skipped when that run also saved a figure and a saved image file was posted (the same chart,
        drawn at another resolution); a displayed image with no saved file is posted.
        """
        # Only containers where code ran this turn can hold new files: no listing call otherwise.
        containers = list(dict.fromkeys([*done.container_ids, *(c.container_id for c in outputs.cited)]))
        listed: dict[tuple[str, str], GeneratedFile] = {}
        for cid in containers:
            try:
                found = await self._workspace.generated_files(cid)
            except OpenAIProblem as err:
                # The answer stands; the cited files (if any) are still delivered below.
                log.warning("could not list files of container %s: %s (request %s)", cid, err.detail, err.request_id)
                continue
            listed.update(((g.container_id, g.file_id), g) for g in found)
        ordered = [*((c.container_id, c.file_id) for c in outputs.cited), *listed]
        titles = sandbox_link_labels("".join(outputs.text))
        seen_hashes: set[str] = set()
        saved_images: dict[str, int] = {}
        if ordered or outputs.images:
            await reply.flush()  # the answer's text first: uploads can take a while
            await reply.set_status(t("status.uploading", lang))
        for cid, file_id in dict.fromkeys(ordered):
            generated = listed.get((cid, file_id)) or await self._workspace.generated_file(cid, file_id)
            if not await self._store.claim_output(cid, generated.version):
                continue
            try:
                data = await self._workspace.download(cid, file_id)
                filename = generated.filename
                await reply.upload(filename=filename, data=data, title=titles.get(filename, filename))
            except BotError:
                await self._store.release_output(cid, generated.version)
                raise
            seen_hashes.add(hashlib.sha256(data).hexdigest())
            if PurePosixPath(filename).suffix.lower() in IMAGE_SUFFIXES:
                saved_images[cid] = saved_images.get(cid, 0) + 1
        for index, image in enumerate(outputs.images, start=1):
            if image.saves_figure and saved_images.get(image.container_id, 0) > 0:
                saved_images[image.container_id] -= 1  # posted as the saved file
                continue
            digest = hashlib.sha256(image.data).hexdigest()
            if digest in seen_hashes or not await self._store.claim_output(image.container_id, f"image:{digest}"):
                continue
            seen_hashes.add(digest)
            await reply.upload(filename=f"chart-{index}.png", data=image.data, title=f"chart-{index}.png")
