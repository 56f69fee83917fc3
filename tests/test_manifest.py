"""manifest.yml validates against Slack's published schema and asks for exactly what the code uses.

The scopes are derived from the code, not from a second hand-written list: every Slack Web API method the
code calls (an `AsyncWebClient` method name anywhere in bot/), every event it listens to (`app.event(...)`)
and its file downloads, through the table below of what Slack's documentation requires for each
(../shared/reference/slack-api.md). A scope in the manifest that nothing uses, or a call without its
scope, fails the test; so does a call missing from the table.
"""

import ast
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import BOT_SCOPES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "reference" / "slack-manifest.schema.1.0.0.json"

HISTORY = frozenset({"channels:history", "groups:history", "im:history", "mpim:history"})
# Slack Web API method (slack_sdk's name) -> bot scopes it needs. Empty: no bot scope (auth.test; and
# apps.connections.open, which takes the app-level token with connections:write, made outside the manifest).
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "auth_test": frozenset(),
    "apps_connections_open": frozenset(),
    "chat_postMessage": frozenset({"chat:write"}),
    "chat_postEphemeral": frozenset({"chat:write"}),
    "chat_update": frozenset({"chat:write"}),
    "chat_delete": frozenset({"chat:write"}),
    "chat_startStream": frozenset({"chat:write"}),
    "chat_appendStream": frozenset({"chat:write"}),
    "chat_stopStream": frozenset({"chat:write"}),
    "assistant_threads_setStatus": frozenset({"chat:write"}),  # chat:write since 2026-03-05
    "files_info": frozenset({"files:read"}),
    "files_upload_v2": frozenset({"files:write"}),  # files.getUploadURLExternal + completeUploadExternal
    "files_getUploadURLExternal": frozenset({"files:write"}),
    "files_completeUploadExternal": frozenset({"files:write"}),
    "conversations_replies": HISTORY,  # one scope per conversation type the bot works in
    "conversations_history": HISTORY,
    "users_info": frozenset({"users:read"}),
    "reactions_add": frozenset({"reactions:write"}),
    # The agent surface (slack-api.md §12, peers.md §4): assistant and agent-session methods need assistant:write.
    "assistant_threads_setSuggestedPrompts": frozenset({"assistant:write"}),
    "assistant_threads_setTitle": frozenset({"assistant:write"}),
    "agents_sessions_setStatus": frozenset({"assistant:write"}),
    "views_publish": frozenset(),  # App Home: no scope
    "chat_getPermalink": frozenset(),  # no scope
}
# Event the code listens to -> (subscriptions in the manifest, bot scopes they need).
EVENT_SUBSCRIPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "app_mention": (frozenset({"app_mention"}), frozenset({"app_mentions:read"})),
    "message": (frozenset({"message.channels", "message.groups", "message.im", "message.mpim"}), HISTORY),
    "app_uninstalled": (frozenset({"app_uninstalled"}), frozenset()),
    "tokens_revoked": (frozenset({"tokens_revoked"}), frozenset()),
    "assistant_thread_started": (frozenset({"assistant_thread_started"}), frozenset({"assistant:write"})),
    "agent_session_stopped": (frozenset({"agent_session_stopped"}), frozenset({"assistant:write"})),
    "app_home_opened": (frozenset({"app_home_opened"}), frozenset()),
}
# Downloading a shared file (url_private / url_private_download with the bot token) needs files:read.
DOWNLOAD_SCOPES = frozenset({"files:read"})

WEB_API_METHODS = {name for name in vars(AsyncWebClient) if not name.startswith("_")}


MANIFESTS = ("manifest.yml", "manifest.http.yml")


def load_manifest(name: str = "manifest.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def code_trees() -> list[ast.Module]:
    return [ast.parse(path.read_text(encoding="utf-8")) for path in sorted((ROOT / "bot").rglob("*.py"))]


def called_web_api_methods() -> set[str]:
    """Names of `AsyncWebClient` methods called anywhere in bot/ (`client.chat_postMessage(...)`)."""
    return {
        node.func.attr
        for tree in code_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WEB_API_METHODS
    }


def listened_events() -> set[str]:
    """Event types registered with `app.event("...")` in bot/."""
    return {
        str(node.args[0].value)
        for tree in code_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "event"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def registers_actions() -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "action"
        for tree in code_trees()
        for node in ast.walk(tree)
    )


def downloads_files() -> bool:
    return any("url_private" in path.read_text(encoding="utf-8") for path in (ROOT / "bot").rglob("*.py"))


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_against_slack_schema(name: str) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load_manifest(name)), key=str)
    assert not errors, [e.message for e in errors]


def test_the_derivation_sees_the_code() -> None:
    """Guards the guard: the AST walk finds the calls and events we know are there."""
    assert {"chat_postMessage", "chat_startStream", "files_upload_v2", "auth_test"} <= called_web_api_methods()
    assert {"app_mention", "message"} <= listened_events()
    assert downloads_files()


def test_every_called_method_has_a_known_scope() -> None:
    unknown = called_web_api_methods() - METHOD_SCOPES.keys()
    assert not unknown, f"add {sorted(unknown)} to METHOD_SCOPES with the scope Slack's docs name"
    unknown_events = listened_events() - EVENT_SUBSCRIPTIONS.keys()
    assert not unknown_events, f"add {sorted(unknown_events)} to EVENT_SUBSCRIPTIONS"


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_asks_for_exactly_the_scopes_and_events_the_code_uses(name: str) -> None:
    manifest = load_manifest(name)
    needed: set[str] = set()
    for method in called_web_api_methods():
        needed |= METHOD_SCOPES.get(method, frozenset())
    events: set[str] = set()
    for event in listened_events():
        subscriptions, scopes = EVENT_SUBSCRIPTIONS.get(event, (frozenset(), frozenset()))
        events |= subscriptions
        needed |= scopes
    if downloads_files():
        needed |= DOWNLOAD_SCOPES
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    assert granted - needed == set(), "asked for but unused"
    assert needed - granted == set(), "used but not asked for"
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == events
    assert manifest["settings"]["interactivity"]["is_enabled"] is registers_actions()
    assert manifest["settings"]["socket_mode_enabled"] is (name == "manifest.yml")
    assert manifest["features"]["bot_user"]["display_name"]
    if "assistant_thread_started" in listened_events() or "agent_session_stopped" in listened_events():
        assert manifest["features"]["agent_view"]["agent_description"], "the agent pane is declared"
    if "app_home_opened" in listened_events():
        assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    # What an OAuth install asks for by default (SLACK_SCOPES unset) is what the manifests grant.
    assert set(BOT_SCOPES) == granted and len(BOT_SCOPES) == len(granted)


def test_the_http_manifest_names_the_bots_urls_and_differs_only_in_transport() -> None:
    socket, http = load_manifest("manifest.yml"), load_manifest("manifest.http.yml")
    settings = http["settings"]
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert [url.rsplit("/", 2)[-2:] for url in http["oauth_config"]["redirect_urls"]] == [["slack", "oauth_redirect"]]
    for manifest in (socket, http):
        manifest["settings"].pop("socket_mode_enabled")
        manifest["settings"]["event_subscriptions"].pop("request_url", None)
        manifest["settings"]["interactivity"].pop("request_url", None)
        manifest["oauth_config"].pop("redirect_urls", None)
    assert socket == http
