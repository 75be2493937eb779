"""Sessions (API Gateway) and chat (Lambda Function URL), API.md §7.

POST /chat runs on a Function URL because an exchange may take up to
CHAT_TIMEOUT_SECONDS (90 s) and API Gateway REST cuts integrations at 29 s.
One module serves both: events in payload format 2.0 come from the URL. On AWS
the URL is a function of its own (ChatStreamFunction) behind the Lambda Web
Adapter, so its server-sent events stream (see conduit/http/stream_server.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, StrictBool, StrictInt

from conduit.chat import exchange as chat
from conduit.chat import sessions
from conduit.chat.exchange import ChatAnswer
from conduit.chat.sessions import SessionView, SessionWithMessages
from conduit.chat.streaming import EventStream
from conduit.http.api import handler_for, make_resolver
from conduit.http.routes import ACCOUNT_ACCESS, Cursor, CurrentCaller, Limit, Page, StrictBody, WorkspaceId, answers, page_body
from conduit.identity.access import account_for
from conduit.identity.gate import prefetch
from conduit.repositories.sessions import prefetch_session

app = make_resolver()  # API Gateway: /sessions
url_app = make_resolver("function_url")  # Function URL: POST /chat (mounted at /chat)
SessionToken = Field(min_length=1, max_length=256)


class NewSession(StrictBody):
    title: str | None = Field(None, min_length=1, max_length=200)
    model: str | None = Field(None, min_length=3, max_length=200)
    siteIds: list[str] | None = Field(None, max_length=100)
    toolAllowList: list[str] | None = Field(None, max_length=500)
    toolDenyList: list[str] | None = Field(None, max_length=500)
    ttlSeconds: StrictInt = Field(86400, ge=1, le=604800)
    systemPrompt: str | None = Field(None, max_length=32_000)  # the provider's system prompt (API.md §14)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)


class ChatRequest(StrictBody):
    sessionToken: str = SessionToken
    message: str = Field(min_length=1, max_length=32_000)
    model: str | None = Field(None, min_length=3, max_length=200)
    stream: StrictBool = False
    workspaceId: str | None = Field(None, min_length=1, max_length=64)


class SessionPage(Page[SessionView]):
    pass


SESSION_CODES = (
    ("INVALID_SESSION", "The session token is malformed (`sess_` and at least 32 URL-safe characters)"),
    ("SESSION_NOT_FOUND", "No session with this token in the account"),
)
SESSION_EXPIRED = ("SESSION_EXPIRED", "The session is past its expiresAt")


@app.post(
    "/sessions",
    tags=["Chat"],
    summary="Start a chat session",
    **answers(
        ("VALIDATION_ERROR", "An unknown model provider"),
        ("NOT_FOUND", "A site of siteIds is not in the account"),
        *ACCOUNT_ACCESS,
        status=201,
        description="The new session",
    ),
)
def create_session(request: NewSession, caller: CurrentCaller) -> SessionView:
    return sessions.create_session(
        account_for(caller, request.workspaceId, "write"),
        title=request.title,
        model=request.model,
        site_ids=request.siteIds,
        allow=request.toolAllowList,
        deny=request.toolDenyList,
        ttl_seconds=request.ttlSeconds,
        system_prompt=request.systemPrompt or None,
    )


@app.get(
    "/sessions",
    tags=["Chat"],
    summary="The account's sessions, newest first",
    **answers(*ACCOUNT_ACCESS, description="A page of sessions, without their messages"),
)
def list_sessions(
    caller: CurrentCaller, workspace_id: WorkspaceId = None, limit: Limit = 20, cursor: Cursor = None
) -> SessionPage:
    return page_body(sessions.list_sessions(account_for(caller, workspace_id, "read"), limit, cursor))


@app.get(
    "/sessions/<sessionToken>",
    tags=["Chat"],
    summary="A session with its messages",
    **answers(*SESSION_CODES, SESSION_EXPIRED, *ACCOUNT_ACCESS, description="The session"),
)
@prefetch(prefetch_session)
def get_session(
    sessionToken: str, caller: CurrentCaller, workspace_id: WorkspaceId = None  # noqa: N803
) -> SessionWithMessages:
    return sessions.get_session(sessionToken, account_for(caller, workspace_id, "read"))


@app.delete(
    "/sessions/<sessionToken>",
    tags=["Chat"],
    summary="Delete a session and its messages",
    description="An expired session can be deleted too.",
    **answers(*SESSION_CODES, *ACCOUNT_ACCESS, status=204, description="Deleted"),
)
@prefetch(prefetch_session)
def delete_session(sessionToken: str, caller: CurrentCaller, workspace_id: WorkspaceId = None):  # noqa: N803
    sessions.delete_session(sessionToken, account_for(caller, workspace_id, "write"))
    return Response(status_code=204)


@url_app.post(
    "/",
    tags=["Chat"],
    summary="Send a message (served at POST /chat)",
    description="One user message; the model may call the session's tools (at most 5 model turns) before it answers. "
    'With `"stream": true` or `Accept: text/event-stream` the answer is server-sent events, each sent as it happens. '
    "An exchange that fails saves nothing; credits already spent stay spent. On AWS this is a Function URL "
    "(the stack's ChatUrl output), since an exchange may outlast API Gateway's 29 s.",
    **answers(
        *SESSION_CODES,
        SESSION_EXPIRED,
        ("VALIDATION_ERROR", "An unknown model provider"),
        ("NO_CREDITS", "The balance cannot pay the next model turn or tool call"),
        ("OUTGOING_RATE_LIMITED", "More tool calls to one site domain in a minute than allowed (Retry-After)"),
        ("MODEL_ERROR", "The model provider failed (after retries), or cut a tool call off"),
        ("TOOL_EXECUTION_ERROR", "A site answered a tool call with a non-2xx status or non-JSON"),
        ("SITE_UNAVAILABLE", "A site could not be reached"),
        ("CHAT_TIMEOUT", "The exchange took longer than CHAT_TIMEOUT_SECONDS (90 s)"),
        *ACCOUNT_ACCESS,
        description="The answer, or the exchange as server-sent events",
        # The events are conduit.chat.STREAM_EVENTS; shared/openapi.py describes them (not needed at run time).
        content={
            "application/json": {"model": ChatAnswer},
            "text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatStreamEvent"}},
        },
    ),
)
def send_message(request: ChatRequest, caller: CurrentCaller):
    exchange = chat.new_exchange(account_for(caller, request.workspaceId, "write"))
    accept = url_app.current_event.headers.get("accept") or ""
    if not (request.stream or "text/event-stream" in accept):
        return chat.chat(exchange, request.sessionToken, request.message, request.model)
    # Streamed as they happen when the invocation has a response stream; the gate's headers go first.
    window = url_app.context.get("rate_window")
    events = EventStream(url_app.lambda_context, headers=window.headers() if window else None)
    return chat.stream_chat(exchange, request.sessionToken, request.message, request.model, events)


_sessions_handler = handler_for(app)
_chat_handler = handler_for(url_app)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return (_chat_handler if event.get("version") == "2.0" else _sessions_handler)(event, context)
