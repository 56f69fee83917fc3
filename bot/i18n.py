"""Every sentence a user can see, in Korean and English; code refers to them by key."""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["ko", "en"]
LANGUAGES: tuple[Language, ...] = ("ko", "en")

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_SLACK_TOKENS = re.compile(r"<[^>]*>")

MESSAGES: dict[str, dict[Language, str]] = {
    "status.thinking": {"ko": "분석하는 중…", "en": "is analyzing…"},
    "status.reading_files": {"ko": "{filename} 파일을 읽는 중…", "en": "is reading {filename}…"},
    "status.running_python": {"ko": "Python을 실행하는 중…", "en": "is running Python…"},
    "status.drawing_chart": {"ko": "차트를 그리는 중…", "en": "is drawing a chart…"},
    "status.uploading": {"ko": "결과 파일을 올리는 중…", "en": "is uploading results…"},
    "status.waiting_slot": {
        "ko": "다른 분석이 끝나기를 기다리는 중… (대기 {place}번째)",
        "en": "is waiting for a free slot… (#{place} in line)",
    },
    "turn.queued": {
        "ko": "이 스레드의 앞선 질문 {ahead}개가 끝나면 이 질문에 답합니다.",
        "en": "Waiting: {ahead} earlier question(s) in this thread come first; I'll answer this one next.",
    },
    "step.reading": {"ko": "{filename} 읽는 중", "en": "Reading {filename}"},
    "step.drawing_chart": {"ko": "차트 그리기", "en": "Drawing a chart"},
    "step.running_python": {"ko": "Python 실행", "en": "Running Python"},
    "pane.prompts_title": {"ko": "이렇게 시작해 보세요", "en": "Try one of these"},
    "pane.prompt_upload.title": {"ko": "CSV 올리고 질문하기", "en": "Ask about a CSV"},
    "pane.prompt_upload.message": {
        "ko": "CSV 파일을 올릴게요. 무엇이든 물어볼 수 있게 먼저 요약해 주세요.",
        "en": "Upload a CSV and ask me anything about it. I'll share one now: summarize it first.",
    },
    "pane.prompt_chart.title": {"ko": "차트 그리기", "en": "Draw a chart"},
    "pane.prompt_chart.message": {
        "ko": "올린 파일에서 월별 추이를 차트로 그려 주세요.",
        "en": "Draw a chart of the monthly trend in the file I share.",
    },
    "pane.prompt_clean.title": {"ko": "데이터 점검하기", "en": "Check data quality"},
    "pane.prompt_clean.message": {
        "ko": "올린 파일에서 빈 값, 중복, 이상한 값을 찾아 주세요.",
        "en": "Find missing values, duplicates and outliers in the file I share.",
    },
    "pane.prompt_compare.title": {"ko": "그룹별 비교하기", "en": "Compare groups"},
    "pane.prompt_compare.message": {
        "ko": "올린 파일을 범주별로 묶어 평균과 합계를 표로 비교해 주세요.",
        "en": "Group the file I share by category and compare averages and totals in a table.",
    },
    "home.title": {"ko": "CSV 분석 봇 사용법", "en": "How to use the CSV analyst"},
    "home.how_to": {
        "ko": "• *파일 공유*: 채널이나 DM에 CSV·TSV·XLSX·JSON 파일을 올립니다.\n"
        "• *멘션*: 파일과 함께 `@csv-analyst 질문`을 보내면 스레드에서 Python으로 분석해 답합니다.\n"
        "• *후속 질문*: 같은 스레드에 이어서 물어보면 같은 파일과 대화를 이어 씁니다.\n"
        "• *중지*: 답변의 중지 버튼을 누르거나 스레드에 `중지`라고 보내면 분석을 멈춥니다.\n"
        "• *삭제*: 스레드에 `잊어줘`라고 보내면 그 스레드의 파일과 분석 데이터를 지웁니다.",
        "en": "• *Share a file*: post a CSV, TSV, XLSX or JSON file in a channel or a DM.\n"
        "• *Mention*: send `@csv-analyst your question` with it; the analysis runs Python and answers in the thread.\n"
        "• *Follow up*: keep asking in the same thread; it keeps the files and the conversation.\n"
        "• *Stop*: press the answer's Stop button, or reply `stop`, to end a running analysis.\n"
        "• *Forget*: reply `forget` in a thread to delete its files and analysis data.",
    },
    "home.recent_title": {"ko": "최근 분석", "en": "Your recent analyses"},
    "home.recent_none": {"ko": "아직 분석한 스레드가 없습니다.", "en": "No analyses yet."},
    "turn.resumed": {
        "ko": "_(봇이 재시작되어 이 질문에 이어서 답합니다.)_",
        "en": "_(The bot restarted; answering this question now.)_",
    },
    "turn.interrupted": {
        "ko": "_(봇이 재시작되어 이 답변이 중단되었습니다. 아래에 다시 답합니다.)_",
        "en": "_(This answer was interrupted by a restart; it is answered again below.)_",
    },
    "feedback.good": {"ko": "도움이 됐어요", "en": "Helpful"},
    "feedback.bad": {"ko": "도움이 안 됐어요", "en": "Not helpful"},
    "turn.stopped": {
        "ko": "분석을 중지했습니다. 새 질문을 보내면 이어서 답합니다.",
        "en": "Stopped the analysis. Send a new question to continue.",
    },
    "turn.nothing_to_stop": {
        "ko": "지금 이 스레드에서 진행 중인 분석이 없습니다.",
        "en": "Nothing is running in this thread right now.",
    },
    "forget.done": {
        "ko": "이 스레드의 데이터를 삭제했습니다: 파일 {files}개, 대화 {conversations}개, 분석 환경(컨테이너) {containers}개, "
        "저장된 응답 {responses}개. 이어서 질문하면 새 세션으로 시작합니다(파일은 다시 올려 주세요).",
        "en": "Deleted this thread's data: {files} file(s), {conversations} conversation(s), {containers} container(s) "
        "and {responses} stored response(s). A new question here starts a fresh session (share the file again).",
    },
    "forget.partial": {
        "ko": "OpenAI에서 {left}개 항목을 아직 지우지 못해 자동으로 다시 시도합니다.",
        "en": "{left} item(s) could not be deleted at OpenAI yet; the bot retries automatically.",
    },
    "forget.nothing": {
        "ko": "이 스레드에는 지울 분석 세션이 없습니다.",
        "en": "There is nothing to forget in this thread.",
    },
    "forget.failed": {
        "ko": "데이터를 삭제하지 못했습니다. 잠시 후 다시 `잊어줘`라고 보내 주세요.",
        "en": "I couldn't delete this thread's data. Please send `forget` again in a moment.",
    },
    "retention.swept": {
        "ko": "이 스레드의 이전 분석 데이터는 {days}일 동안 사용이 없어 삭제되었습니다. 새 세션으로 시작합니다. "
        "이전 파일이 필요하면 다시 올려 주세요.",
        "en": "This thread's earlier analysis data was deleted after {days} days of inactivity, so this is a fresh "
        "session. Please share the file again if you need it.",
    },
    "retention.forgotten": {
        "ko": "요청에 따라 이 스레드의 이전 분석 데이터를 삭제했습니다. 새 세션으로 시작합니다. "
        "이전 파일이 필요하면 다시 올려 주세요.",
        "en": "This thread's earlier analysis data was deleted on request (forget), so this is a fresh session. "
        "Please share the file again if you need it.",
    },
    "access.refused": {
        "ko": "이 봇은 여기에서 사용하실 수 있도록 설정되어 있지 않습니다.",
        "en": "This bot is not enabled for you here.",
    },
    "access.admin_contact": {
        "ko": "사용하려면 {contact}에 문의해 주세요.",
        "en": "To ask for access, contact {contact}.",
    },
    "turn.empty_answer": {
        "ko": "답변이 비어 있습니다. 질문을 조금 바꿔서 다시 보내 주세요.",
        "en": "The answer came back empty. Please rephrase the question and send it again.",
    },
    "turn.container_reset": {
        "ko": "(이전 분석 환경이 만료되어 새 환경에서 파일을 다시 불러왔습니다.)",
        "en": "(The previous analysis environment expired; the files were reloaded in a new one.)",
    },
    "file.download_failed": {
        "ko": "`{filename}` 파일을 Slack에서 내려받지 못했습니다. 파일을 다시 올려 주세요.",
        "en": "I couldn't download `{filename}` from Slack. Please share the file again.",
    },
    "file.too_large": {
        "ko": "`{filename}` 파일이 너무 큽니다 ({size_mb} MB, 최대 {limit_mb} MB). 필요한 열이나 행만 남겨서 올려 주세요.",
        "en": "`{filename}` is too large ({size_mb} MB; the limit is {limit_mb} MB). Please share a smaller extract.",
    },
    "file.html_instead_of_file": {
        "ko": "`{filename}` 대신 Slack 로그인 페이지를 받았습니다. 앱에 `files:read` 권한을 추가하고 "
        "워크스페이스에 다시 설치해 달라고 관리자에게 요청해 주세요.",
        "en": "Slack sent a sign-in page instead of `{filename}`. Ask an admin to add the `files:read` "
        "scope to the app and reinstall it to the workspace.",
    },
    "file.unavailable": {
        "ko": "`{filename}` 파일을 열 수 없습니다(삭제되었거나 보관 기간이 지난 파일). 파일을 다시 올려 주세요.",
        "en": "`{filename}` is no longer available (deleted or hidden by the workspace's plan). Please share it again.",
    },
    "file.external": {
        "ko": "`{filename}`은(는) {service} 링크라서 내용을 읽을 수 없습니다. 파일을 내려받아 Slack에 직접 올려 주세요.",
        "en": "`{filename}` is a {service} link, so I can't read its contents. "
        "Please download it and upload the file to Slack directly.",
    },
    "file.empty": {
        "ko": "`{filename}` 파일이 비어 있습니다. 내용이 있는 파일을 올려 주세요.",
        "en": "`{filename}` is empty. Please share a file with data in it.",
    },
    "terminal.saved": {"ko": "저장한 파일: {path}", "en": "saved: {path}"},
    "file.missing": {
        "ko": "`{filename}` 파일을 열 수 없습니다(없는 파일이거나 읽을 권한이 없습니다). 경로를 확인해 주세요.",
        "en": "I can't open `{filename}`: there is no such file, or it cannot be read. Please check the path.",
    },
    "file.unsupported": {
        "ko": "`{filename}` 형식은 분석할 수 없습니다. CSV, TSV, XLSX, JSON 파일을 올려 주세요.",
        "en": "I can't analyze `{filename}`. Supported formats are CSV, TSV, XLSX and JSON.",
    },
    "file.upload_failed": {
        "ko": "`{filename}` 파일을 분석 환경에 올리지 못했습니다. 잠시 후 다시 시도해 주세요.",
        "en": "I couldn't hand `{filename}` to the analysis environment. Please try again in a moment.",
    },
    "file.thread_limit": {
        "ko": "`{filename}`은(는) 추가하지 않았습니다. 이 스레드의 파일 한도(최대 {max_files}개, {max_mb} MB)를 넘습니다. 새 스레드에서 시작해 주세요.",
        "en": "I didn't add `{filename}`: this thread is at its file limit ({max_files} files, {max_mb} MB). "
        "Please start a new thread for more files.",
    },
    "openai.rate_limited": {
        "ko": "지금 OpenAI 요청이 많아 답하지 못했습니다. 1분쯤 뒤에 같은 질문을 다시 보내 주세요.",
        "en": "OpenAI is rate-limiting requests right now. Please send the question again in a minute.",
    },
    "openai.quota": {
        "ko": "OpenAI 사용 한도가 소진되었습니다. 관리자에게 결제/한도 설정을 확인해 달라고 요청해 주세요.",
        "en": "The OpenAI quota for this bot is used up. Please ask an admin to check billing and limits.",
    },
    "openai.auth": {
        "ko": "OpenAI가 봇의 API 키를 거부했습니다. 관리자에게 `OPENAI_API_KEY` 설정을 확인해 달라고 요청해 주세요.",
        "en": "OpenAI rejected the bot's API key. Please ask an admin to check `OPENAI_API_KEY`.",
    },
    "openai.unavailable": {
        "ko": "OpenAI에 연결하지 못했습니다. 잠시 후 같은 질문을 다시 보내 주세요.",
        "en": "I couldn't reach OpenAI. Please send the question again in a few minutes.",
    },
    "openai.busy": {
        "ko": "이전 분석이 아직 끝나지 않았습니다. 잠시 후 다시 보내 주세요.",
        "en": "The previous analysis in this thread is still running. Please send this again shortly.",
    },
    "openai.rejected": {
        "ko": "OpenAI가 요청을 거부했습니다. 질문이나 파일을 바꿔서 다시 시도해 주세요. (요청 ID: {request_id})",
        "en": "OpenAI rejected the request. Please try a different question or file. (request id: {request_id})",
    },
    "openai.failed": {
        "ko": "분석이 도중에 실패했습니다. 같은 질문을 다시 보내 주세요. (요청 ID: {request_id})",
        "en": "The analysis failed part-way. Please send the question again. (request id: {request_id})",
    },
    "openai.incomplete": {
        "ko": '_(답변이 중간에 끊겼습니다({reason}). "계속"이라고 답하면 이어서 씁니다.)_',
        "en": '_(The answer stopped early ({reason}). Reply "continue" to get the rest.)_',
    },
    "openai.incomplete_length": {
        "ko": '_(답변이 길이 제한에 걸려 중간에 끊겼습니다. "계속"이라고 답하면 이어서 씁니다.)_',
        "en": '_(The answer reached the length limit and stopped early. Reply "continue" to get the rest.)_',
    },
    "openai.incomplete_tool_limit": {
        "ko": '_(분석이 한 번에 할 수 있는 코드 실행 한도({max_runs}회)에 도달해 여기서 멈췄습니다. "계속"이라고 답하면 이어서 분석합니다.)_',
        "en": '_(The analysis reached its limit of {max_runs} code runs and stopped here. Reply "continue" to carry on.)_',
    },
    "openai.incomplete_filter": {
        "ko": "_(OpenAI의 콘텐츠 필터 때문에 답변이 중간에 끊겼습니다. 질문을 바꿔서 다시 보내 주세요.)_",
        "en": "_(OpenAI's content filter stopped the answer early. Please rephrase the question.)_",
    },
    "budget.exhausted_user_daily": {
        "ko": "오늘 사용 한도(${amount})를 모두 써서 이 질문에는 답하지 않았습니다. 한도는 {resets}에 초기화됩니다.",
        "en": "You have used up your daily limit (${amount}), so I didn't answer this. It resets at {resets}.",
    },
    "budget.exhausted_channel_daily": {
        "ko": "이 채널의 오늘 사용 한도(${amount})를 모두 써서 이 질문에는 답하지 않았습니다. "
        "한도는 {resets}에 초기화됩니다.",
        "en": "This channel's daily limit (${amount}) is used up, so I didn't answer this. It resets at {resets}.",
    },
    "budget.exhausted_team_monthly": {
        "ko": "이 워크스페이스의 이번 달 사용 한도(${amount})를 모두 써서 이 질문에는 답하지 않았습니다. "
        "한도는 {resets}에 초기화됩니다.",
        "en": "This workspace's monthly limit (${amount}) is used up, so I didn't answer this. It resets at {resets}.",
    },
    "budget.warning_user_daily": {
        "ko": "_(오늘 사용 한도 ${amount} 중 {percent}%를 썼습니다. 한도는 {resets}에 초기화됩니다.)_",
        "en": "_(You have used {percent}% of your daily limit of ${amount}; it resets at {resets}.)_",
    },
    "budget.warning_channel_daily": {
        "ko": "_(이 채널의 오늘 사용 한도 ${amount} 중 {percent}%를 썼습니다. 한도는 {resets}에 초기화됩니다.)_",
        "en": "_(This channel has used {percent}% of its daily limit of ${amount}; it resets at {resets}.)_",
    },
    "budget.warning_team_monthly": {
        "ko": "_(이 워크스페이스의 이번 달 사용 한도 ${amount} 중 {percent}%를 썼습니다. 한도는 {resets}에 초기화됩니다.)_",
        "en": "_(This workspace has used {percent}% of its monthly limit of ${amount}; it resets at {resets}.)_",
    },
    "slack.failed": {
        "ko": "Slack에 답변을 올리는 중 문제가 생겼습니다. 같은 질문을 다시 보내 주세요.",
        "en": "Slack refused part of the answer. Please send the question again.",
    },
    "error.unexpected": {
        "ko": "예상하지 못한 오류가 발생했습니다. 같은 질문을 다시 보내 주세요. 계속되면 관리자에게 알려 주세요.",
        "en": "Something unexpected went wrong. Please send the question again; if it keeps happening, tell an admin.",
    },
}


def detect_language(text: str) -> Language:
    """Korean if the message (without Slack mentions and links) contains Hangul, else English."""
    return "ko" if _HANGUL.search(_SLACK_TOKENS.sub("", text)) else "en"


def t(key: str, lang: Language, **params: object) -> str:
    """The sentence for `key` in `lang` with `params` filled in; missing params show as '-'."""
    template = MESSAGES[key][lang]
    return template.format_map(_Defaulting({k: str(v) for k, v in params.items() if v is not None}))


class _Defaulting(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"
