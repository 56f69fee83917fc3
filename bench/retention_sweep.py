"""How long the retention sweep takes for N idle threads, beside a floor of plain HTTP round trips.

Run: `python -m bench.retention_sweep [--threads 10000] [--database-url sqlite:///…|postgresql://…]`.

Everything runs in this process on 127.0.0.1 with the loopback FakeOpenAI of `tests.fakes`. Each of the N
threads is seeded as a real one looks after one answered question: a session (conversation + container),
one uploaded file, one finished turn with its stored response id, all last touched 31 days ago; the fake
holds the matching file, container, conversation (with a user and an assistant item) and response. Then:

1. **sweep**: `Forgetter.sweep(30)` as the bot runs it (the real `openai.AsyncOpenAI` client, a semaphore of
   `SWEEP_CONCURRENCY`), timed from the call to its return; afterwards every object must be gone at the fake
   and every session row gone from the database, with N tombstones.
2. **floor**: the same number of HTTP requests the sweep sent to the fake, as plain `DELETE` round trips to
   a file id the fake does not know (a 404 through the same server, authentication and routing), from one
   `aiohttp` session with the same concurrency. The floor is what the network path alone costs here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import tempfile
import time
from pathlib import Path

import aiohttp
import openai
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.analysis.workspace import Workspace
from bot.governance.retention import SWEEP_CONCURRENCY, Forgetter
from bot.store import Store, async_database_url
from bot.store.tables import sessions, thread_files, thread_tombstones, turns
from tests.fakes.openai_fake import FakeOpenAI

IDLE_S = 31 * 86_400
ROWS_PER_INSERT = 1_000


def seed_fake(oai: FakeOpenAI, n: int) -> list[dict[str, str]]:
    """N threads' objects at the fake, written into its state directly (no HTTP)."""
    now = int(time.time())
    threads = []
    for i in range(n):
        ids = {
            "file": f"file-bench{i:06d}{secrets.token_hex(4)}",
            "container": f"cntr_bench{i:06d}{secrets.token_hex(8)}",
            "conversation": f"conv_bench{i:06d}{secrets.token_hex(8)}",
            "response": f"resp_bench{i:06d}{secrets.token_hex(8)}",
        }
        oai.files[ids["file"]] = {
            "object": {"id": ids["file"], "object": "file", "bytes": 3, "created_at": now, "filename": "d.csv"},
            "content": b"a,b",
        }
        oai.containers[ids["container"]] = {
            "object": {"id": ids["container"], "object": "container", "status": "running", "last_active_at": now},
            "files": {},
        }
        items = [
            {"id": f"msg_u{i}", "type": "message", "role": "user", "content": [], "status": "completed"},
            {"id": f"msg_a{i}", "type": "message", "role": "assistant", "content": [], "status": "completed"},
        ]
        oai.conversations[ids["conversation"]] = {
            "object": {"id": ids["conversation"], "object": "conversation", "created_at": now, "metadata": {}},
            "items": items,
            "deleted": False,
        }
        oai.responses[ids["response"]] = {"id": ids["response"], "object": "response", "status": "completed"}
        threads.append(ids)
    return threads


async def seed_database(url: str, threads: list[dict[str, str]]) -> None:
    engine = create_async_engine(async_database_url(url))
    old = time.time() - IDLE_S
    try:
        for start in range(0, len(threads), ROWS_PER_INSERT):
            chunk = list(enumerate(threads[start : start + ROWS_PER_INSERT], start))
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(sessions),
                    [
                        {
                            "team_id": "T1",
                            "channel": "C1",
                            "thread_ts": f"1700000000.{i:06d}",
                            "conversation_id": ids["conversation"],
                            "container_id": ids["container"],
                            "root_checked": True,
                            "created_at": old,
                            "updated_at": old,
                        }
                        for i, ids in chunk
                    ],
                )
                await conn.execute(
                    sa.insert(thread_files),
                    [
                        {
                            "team_id": "T1",
                            "channel": "C1",
                            "thread_ts": f"1700000000.{i:06d}",
                            "slack_file_id": f"F{i:08d}",
                            "openai_file_id": ids["file"],
                            "filename": "d.csv",
                            "size_bytes": 3,
                            "description": "",
                            "sha256": "",
                            "created_at": old,
                        }
                        for i, ids in chunk
                    ],
                )
                await conn.execute(
                    sa.insert(turns),
                    [
                        {
                            "team_id": "T1",
                            "channel": "C1",
                            "ts": f"1700000000.{i:06d}",
                            "thread_ts": f"1700000000.{i:06d}",
                            "user_id": "U1",
                            "text": "<@UBOT> analyse this",
                            "files_json": "[]",
                            "is_thread_reply": False,
                            "status": "done",
                            "attempts": 1,
                            "owner": "bench",
                            "lease_until": 0.0,
                            "response_id": ids["response"],
                            "outcome": "completed",
                            "created_at": old,
                            "updated_at": old,
                        }
                        for i, ids in chunk
                    ],
                )
    finally:
        await engine.dispose()


async def count_rows(url: str) -> tuple[int, int]:
    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.connect() as conn:
            left = (await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar_one()
            tombs = (await conn.execute(sa.select(sa.func.count()).select_from(thread_tombstones))).scalar_one()
    finally:
        await engine.dispose()
    return int(left), int(tombs)


async def floor(oai: FakeOpenAI, requests: int, concurrency: int) -> float:
    """`requests` plain DELETE round trips to the fake (404s), `concurrency` at a time, one session."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {oai.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(i: int) -> None:
            async with slots, http.delete(f"{oai.base_url}/files/file-missing{i}") as resp:
                await resp.read()
                assert resp.status == 404

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return time.perf_counter() - started


async def main(n: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        async with FakeOpenAI() as oai:
            store = await Store.open(url)
            threads = seed_fake(oai, n)
            await seed_database(url, threads)
            client = openai.AsyncOpenAI(api_key=oai.api_key, base_url=oai.base_url, max_retries=3)
            forgetter = Forgetter(store=store.retention, workspace=Workspace(client))
            before = len(oai.requests)
            started = time.perf_counter()
            result = await forgetter.sweep(30)
            sweep_s = time.perf_counter() - started
            sent = len(oai.requests) - before
            await client.close()
            await store.close()
            left, tombstones = await count_rows(url)
            assert result.threads == n and result.failed == 0, result
            assert not oai.files and not oai.containers and not oai.responses, "objects left at the fake"
            assert all(c["deleted"] and not c["items"] for c in oai.conversations.values())
            assert left == 0 and tombstones == n, (left, tombstones)
            floor_s = await floor(oai, sent, SWEEP_CONCURRENCY)
    print(f"threads: {n}  database: {url.split(':', 1)[0]}  concurrency: {SWEEP_CONCURRENCY}")
    print(f"requests to OpenAI (fake): {sent} ({sent / n:.1f} per thread)")
    print(f"sweep: {sweep_s:.2f} s ({n / sweep_s:,.0f} threads/s)")
    print(f"floor: {floor_s:.2f} s for {sent} plain DELETE round trips, one aiohttp session")
    print(f"sweep / floor: {sweep_s / floor_s:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.threads, args.database_url))
