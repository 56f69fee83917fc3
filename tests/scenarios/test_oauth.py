"""Many workspaces: Bolt's OAuth install flow against the fake, each workspace answered with its own token,
bad installs refused with a page, and an uninstall forgetting that workspace's data only."""

from __future__ import annotations

import contextlib
import html
import logging
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
import sqlalchemy as sa

from bot.domain import Incoming, ThreadKey
from bot.store.tables import sessions, slack_bots, slack_installations, slack_oauth_states, thread_tombstones
from tests.conftest import RunningBot, answer_texts, free_port, run_bot, user_file_ids, user_uploads
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

CSV = b"region,amount\nnorth,10\nsouth,20\n"


def oauth_env(slack: FakeSlack) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "", "SLACK_CLIENT_ID": slack.client_id, "SLACK_CLIENT_SECRET": slack.client_secret}


@contextlib.asynccontextmanager
async def oauth_bot(slack: FakeSlack, oai: FakeOpenAI, database_url: str) -> AsyncIterator[RunningBot]:
    port = free_port()
    slack.oauth_redirect_url = f"http://127.0.0.1:{port}/slack/oauth_redirect"
    async with run_bot(slack, oai, database_url, mode="http", port=port, env=oauth_env(slack)) as running:
        yield running


def browser() -> aiohttp.ClientSession:
    """One person's browser: keeps the cookies the bot sets (on 127.0.0.1, hence `unsafe`)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def add_to_slack(running: RunningBot, http: aiohttp.ClientSession) -> str:
    """Open the bot's "Add to Slack" page; returns the consent URL its button links to."""
    async with http.get(f"http://127.0.0.1:{running.port}/slack/install") as resp:
        assert resp.status == 200
        page = await resp.text()
        # Bolt's state cookie is `Secure` (the install page is served over https in production); this test
        # speaks plain http on loopback, so the browser keeps it without that flag.
        assert resp.cookies["slack-app-oauth-state"]["secure"]
        http.cookie_jar.update_cookies({name: morsel.value for name, morsel in resp.cookies.items()})
    match = re.search(r'<a href="([^"]+)"', page)
    assert match is not None, page
    return html.unescape(match.group(1))


async def install(running: RunningBot, team_id: str) -> tuple[int, str]:
    """A person of `team_id` clicks Add to Slack, then Allow; returns the page the bot shows at the end."""
    async with browser() as http:
        consent = await add_to_slack(running, http)
        async with http.get(f"{consent}&team={team_id}") as resp:  # Slack redirects back to the bot
            assert str(resp.url).startswith(f"http://127.0.0.1:{running.port}/slack/oauth_redirect?")
            return resp.status, await resp.text()


async def count(running: RunningBot, table: sa.Table) -> int:
    async with running.bot.store.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


def second_workspace(slack: FakeSlack) -> dict:
    """Workspace T2 (bot user UBOT2) with channel C2 and a CSV there; the app is not installed yet."""
    slack.add_team("T2", name="Second Workspace", bot_user_id="UBOT2", bot_id="B2")
    with slack.as_team("T2"):
        slack.add_channel("C2")
        slack.add_user("U7", name="user7")
        return slack.add_file(name="second.csv", content=CSV, user="U7")


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    file = second_workspace(slack)
    async with oauth_bot(slack, oai, sqlite_url) as running:
        for team in ("T1", "T2"):
            status, page = await install(running, team)
            assert status == 200 and "Thank you!" in page, page
        installations = running.bot.installations
        assert installations is not None
        assert await installations.bot_token("T1") == slack.token_of("T1")
        assert await installations.bot_token("T2") == slack.token_of("T2") != slack.token_of("T1")
        assert await count(running, slack_oauth_states) == 0, "each state was used up"

        first = await slack.user_posts(channel="C1", text="<@UBOT> how many rows?")
        second = await slack.user_posts(channel="C2", text="<@UBOT2> total amount?", user="U7", files=[file])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first["ts"])) == 1)
        await slack.wait_for(lambda: len(answer_texts(slack, "C2", second["ts"])) == 1)

    for channel, team in (("C1", "T1"), ("C2", "T2")):
        calls = [c for c in slack.calls if channel in (c.params.get("channel"), c.params.get("channel_id"))]
        assert calls and {c.token for c in calls} == {slack.token_of(team)}, channel
    (download,) = slack.file_downloads()
    assert download.token == slack.token_of("T2") and download.status == 200
    assert len(user_uploads(oai)) == 1


async def test_forged_replayed_and_rejected_installs_get_an_error_page_and_store_nothing(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with oauth_bot(slack, oai, sqlite_url) as running:
        redirect = f"http://127.0.0.1:{running.port}/slack/oauth_redirect"
        async with browser() as http:
            # A state the bot never issued (the attacker sets the matching cookie too).
            code = slack.issue_code("T1")
            http.cookie_jar.update_cookies({"slack-app-oauth-state": "forged"})
            async with http.get(redirect, params={"code": code, "state": "forged"}) as resp:
                assert resp.status == 401 and "Something Went Wrong" in await resp.text()
                assert "invalid_state" in await resp.text()
        # No cookie from our install page: a link someone else started.
        async with browser() as http, http.get(redirect, params={"code": code, "state": "forged"}) as resp:
            assert resp.status == 400 and "invalid_browser" in await resp.text()
        assert not slack.calls_to("oauth.v2.access"), "a forged state never reaches Slack"

        async with browser() as http:
            # A code Slack rejects: a real state, a made-up code.
            consent = await add_to_slack(running, http)
            state = dict(re.findall(r"[?&](\w+)=([^&]*)", consent))["state"]
            async with http.get(redirect, params={"code": "made-up", "state": state}) as resp:
                assert resp.status == 401 and "invalid_code" in await resp.text()
        assert [c.status for c in slack.calls_to("oauth.v2.access")] == [200]

        async with browser() as http:
            # A good install, then the same redirect again (e.g. a reload, or a copied link): refused.
            consent = await add_to_slack(running, http)
            async with http.get(f"{consent}&team=T1") as resp:
                assert resp.status == 200
                done = resp.url
            http.cookie_jar.update_cookies({"slack-app-oauth-state": done.query["state"]})
            async with http.get(done) as resp:
                assert resp.status == 401 and "invalid_state" in await resp.text()
        assert await count(running, slack_installations) == 1
        assert await count(running, slack_bots) == 1


async def test_an_event_from_a_workspace_without_installation_is_logged_and_ignored(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    second_workspace(slack)
    async with oauth_bot(slack, oai, sqlite_url) as running:
        await install(running, "T1")
        with caplog.at_level(logging.WARNING, logger="bot.slack.oauth"):
            message = await slack.user_posts(channel="C2", text="<@UBOT2> anyone there?", user="U7")
            await slack.wait_delivered()
        assert "workspace T2, where the app is not installed" in caplog.text
        assert all(status == 200 for status, _ in slack.http_deliveries), "acknowledged, so Slack does not retry"
        assert slack.thread("C2", message["ts"])[1:] == []
        # The installed workspace is still answered.
        first = await slack.user_posts(channel="C1", text="<@UBOT> rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first["ts"])) == 1)
        assert await count(running, sessions) == 1
    assert len(oai.requests_to("POST", "/v1/responses")) == 1


@pytest.mark.parametrize("how", ["uninstall", "revoke_tokens"])
async def test_uninstall_forgets_that_workspace_and_leaves_the_other(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, how: str
) -> None:
    file = second_workspace(slack)
    async with oauth_bot(slack, oai, sqlite_url) as running:
        for team in ("T1", "T2"):
            await install(running, team)
        first = await slack.user_posts(channel="C1", text="<@UBOT> rows?")
        second = await slack.user_posts(channel="C2", text="<@UBOT2> total?", user="U7", files=[file])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first["ts"])) == 1)
        await slack.wait_for(lambda: len(answer_texts(slack, "C2", second["ts"])) == 1)
        (uploaded,) = user_file_ids(oai, list(oai.files))
        t2_conversation = next(
            r.json["conversation"] for r in oai.requests_to("POST", "/v1/responses") if "total?" in str(r.json)
        )

        await getattr(slack, how)("T2")
        await slack.wait_delivered()
        await running.bot.uninstalls.wait_idle()

        installations = running.bot.installations
        assert installations is not None
        assert await installations.bot_token("T2") is None
        assert await installations.bot_token("T1") == slack.token_of("T1")
        async with running.bot.store.engine.connect() as conn:
            left = {row.team_id for row in await conn.execute(sa.select(sessions.c.team_id))}
            tombstones = [(r.team_id, r.reason) for r in await conn.execute(sa.select(thread_tombstones))]
        assert left == {"T1"}
        assert tombstones == [("T2", "uninstalled")]
        assert oai.requests_to("DELETE", f"/v1/conversations/{t2_conversation}")
        assert oai.requests_to("DELETE", f"/v1/files/{uploaded}") and uploaded not in oai.files
        deleted = {r.path.split("/")[3] for r in oai.requests_to("DELETE", "/v1/conversations/")}
        assert deleted == {t2_conversation}, "T1's conversation is kept"

        # T1 still works; T2 is not answered (no installation, no token).
        again = await slack.user_posts(channel="C1", text="<@UBOT> and now?", thread_ts=first["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first["ts"])) == 2)
        await slack.user_posts(channel="C2", text="<@UBOT2> still there?", user="U7")
        await slack.wait_delivered()
        assert again["ts"]
    assert len(oai.requests_to("POST", "/v1/responses")) == 3, "nothing was asked for T2 after the uninstall"


async def test_a_turn_left_from_an_uninstalled_workspace_is_dropped(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    """A turn accepted before its workspace uninstalled (e.g. resumed after a restart) has no token to answer with."""
    async with oauth_bot(slack, oai, sqlite_url) as running:
        thread = ThreadKey("T3", "C3", "1700000000.000100")
        incoming = Incoming(thread, thread.thread_ts, "U9", "<@UBOT3> rows?", (), False, True)
        turn = await running.bot.store.accept_message(incoming)
        assert turn is not None
        running.bot.scheduler.submit(turn)
        await slack.wait_for(lambda: not running.bot.scheduler.held_turn_ids())
        assert await running.bot.store.turn_status(turn.id) == "failed"
    assert not oai.requests_to("POST", "/v1/responses")
    assert not [c for c in slack.calls if c.method != "auth.test"]


async def test_single_workspace_uninstall_forgets_its_threads(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        first = await slack.user_posts(channel="C1", text="<@UBOT> rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first["ts"])) == 1)
        await slack.uninstall("T1")
        await slack.wait_delivered()
        await running.bot.uninstalls.wait_idle()
        assert running.bot.installations is None
        assert await count(running, sessions) == 0
        assert await count(running, thread_tombstones) == 1
    assert oai.requests_to("DELETE", "/v1/conversations/")
