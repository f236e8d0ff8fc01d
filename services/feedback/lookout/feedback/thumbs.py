"""End-user thumbs: POST /v1/feedback and POST /v1/feedback/token.

Who votes: an API key with the `feedback` scope for the call's app (server side; the body
names the end user in `user_id`), or a feedback token minted for one call and one end
user (browser side; the token fixes the call and the user, so it cannot vote elsewhere).

Replacement: every vote is its own feedback row, with feedback_id = uuid5(event_id,
source, author, ts in µs), so a Kafka-level resend of the same record collapses in the
sink (same id) while a changed vote is a new row with a later ts. Readers take the latest
row per (event_id, source, author): the `feedback_latest` view. A fixed uuid5(event_id,
author) was not used because the sink keeps the *first* row of an id, so the earlier
vote would win whenever both arrive in one sink batch.

Per-version counts: the vote copies its call's model, model_version, environment and ts
from the lookup that finds the call's app anyway (same row, same query), and names the
thumbs of the vote it replaces, so the versions_1m rollup counts each author's latest vote
under the call's version without reading llm_calls or feedback_latest.

Duplicates: re-posting the vote an author already has (same thumbs and comment) is an
idempotent 200 with `"duplicate": true` and the stored feedback_id; nothing is produced.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from lookout.core import ids
from lookout.core.api_errors import CHALLENGE, ApiError, ErrorRoute, bearer_key, require
from lookout.core.auth import ApiKeyStore
from lookout.core.events import Feedback, ShortText, now_utc

from . import store, tokens
from .publish import FeedbackPublisher, Unavailable
from .settings import FeedbackSettings


class ThumbsIn(BaseModel):
    event_id: uuid.UUID
    thumbs: Literal[-1, 1]
    comment: Annotated[str, Field(max_length=10_000)] | None = None
    # With an API key: the end user who voted (pseudonymised by the app). Ignored with a token.
    user_id: ShortText | None = None


class ThumbsOut(BaseModel):
    feedback_id: uuid.UUID
    event_id: uuid.UUID
    duplicate: bool
    replaced: bool


class TokenIn(BaseModel):
    event_id: uuid.UUID
    user_id: ShortText | None = None
    ttl_s: Annotated[int, Field(ge=1, le=30 * 86_400)] | None = None


class TokenOut(BaseModel):
    token: str
    expires_at: int


def feedback_id(event_id: uuid.UUID, source: str, author: str, ts_us: int) -> uuid.UUID:
    return ids.uuid_from(f"feedback/{event_id}/{source}/{author}/{ts_us}")


@dataclass
class ThumbsContext:
    settings: FeedbackSettings
    db: store.Db | None = None
    keys: ApiKeyStore | None = None
    publisher: FeedbackPublisher | None = None
    # Votes this instance produced recently, so a quick re-post is recognised as a
    # duplicate before the sink has stored the first one.
    recent: OrderedDict[tuple, store.Vote] | None = None
    # event_id -> the calls seen: a stored call never changes, so hits need no query.
    apps: OrderedDict[uuid.UUID, store.CallRef] | None = None


def _remember(ctx: ThumbsContext, key: tuple, vote: store.Vote) -> None:
    if ctx.recent is None:
        ctx.recent = OrderedDict()
    ctx.recent[key] = vote
    ctx.recent.move_to_end(key)
    while len(ctx.recent) > 10_000:
        ctx.recent.popitem(last=False)


def build_router(ctx: ThumbsContext) -> APIRouter:
    router = APIRouter(tags=["feedback"], route_class=ErrorRoute)

    known: OrderedDict[uuid.UUID, store.CallRef] = ctx.apps if ctx.apps is not None else OrderedDict()
    ctx.apps = known

    async def call_or_404(event_id: uuid.UUID) -> store.CallRef:
        call = known.get(event_id)
        if call is None:
            call = await run_in_threadpool(store.call_ref, ctx.db, event_id)
        if call is None:
            raise ApiError(404, f"no call with event_id {event_id}", field="event_id")
        known[event_id] = call
        known.move_to_end(event_id)
        if len(known) > 100_000:
            known.popitem(last=False)
        return call

    @router.post("/v1/feedback/token")
    async def mint_token(body: TokenIn, authorization: Annotated[str | None, Header()] = None) -> TokenOut:
        key = await bearer_key(ctx.keys, authorization)
        require(key, "feedback")
        if not ctx.settings.feedback_token_secret:
            raise ApiError(503, "feedback tokens are off: LOOKOUT_FEEDBACK_TOKEN_SECRET is not set")
        app_id = (await call_or_404(body.event_id)).app_id
        if not key.allows("feedback", app_id):
            # Another app's call is reported as missing: its existence is not this key's business.
            raise ApiError(404, f"no call with event_id {body.event_id}", field="event_id")
        token, expires = tokens.mint(
            ctx.settings.feedback_token_secret,
            body.event_id,
            app_id,
            body.user_id or "anonymous",
            body.ttl_s or ctx.settings.feedback_token_ttl_s,
        )
        return TokenOut(token=token, expires_at=expires)

    @router.post("/v1/feedback")
    async def post_feedback(
        body: ThumbsIn,
        authorization: Annotated[str | None, Header()] = None,
        x_feedback_token: Annotated[str | None, Header()] = None,
    ) -> ThumbsOut:
        if x_feedback_token:
            if not ctx.settings.feedback_token_secret:
                raise ApiError(401, "feedback tokens are not accepted here", headers=CHALLENGE)
            try:
                claims = tokens.verify(ctx.settings.feedback_token_secret, x_feedback_token)
            except tokens.BadToken as exc:
                raise ApiError(401, str(exc), headers=CHALLENGE) from None
            if claims.event_id != body.event_id:
                raise ApiError(401, "this feedback token is for another call", field="event_id", headers=CHALLENGE)
            author = claims.author
            call = await call_or_404(body.event_id)
            if call.app_id != claims.app_id:
                raise ApiError(401, "this feedback token is for another app", headers=CHALLENGE)
        else:
            key = await bearer_key(ctx.keys, authorization)
            require(key, "feedback")
            call = await call_or_404(body.event_id)
            if not key.allows("feedback", call.app_id):
                raise ApiError(404, f"no call with event_id {body.event_id}", field="event_id")
            author = body.user_id or f"key:{key.key_id}"
        return await _vote(ctx, body, call, author)

    return router


async def _vote(ctx: ThumbsContext, body: ThumbsIn, call: store.CallRef, author: str) -> ThumbsOut:
    comment = body.comment or ""
    memo_key = (body.event_id, author)
    previous = (ctx.recent or {}).get(memo_key)
    if previous is None:
        previous = await run_in_threadpool(store.latest_vote, ctx.db, body.event_id, "end_user", author)
    if previous is not None and previous.thumbs == body.thumbs and previous.comment == comment:
        return ThumbsOut(feedback_id=previous.feedback_id, event_id=body.event_id, duplicate=True, replaced=False)
    ts = now_utc()
    if previous is not None and previous.ts is not None:
        # Storage keeps ms and readers take the latest ts: a replacement must sort after.
        stored_ms = previous.ts.replace(microsecond=previous.ts.microsecond // 1000 * 1000)
        ts = max(ts, stored_ms + timedelta(milliseconds=1))
    fid = feedback_id(body.event_id, "end_user", author, int(ts.timestamp() * 1_000_000))
    record = Feedback(
        feedback_id=fid,
        event_id=body.event_id,
        ts=ts,
        app_id=call.app_id,
        source="end_user",
        author=author,
        thumbs=body.thumbs,
        comment=body.comment,
        model=call.model,
        model_version=call.model_version,
        environment=call.environment,
        call_ts=call.ts,
        # The per-version rollup takes the replaced vote back (a comment-only change too:
        # it is a new row all the same).
        replaces_thumbs=previous.thumbs if previous is not None else None,
    )
    try:
        await ctx.publisher.publish(record)
    except Unavailable as exc:
        raise ApiError(503, f"{exc}; retry later", headers={"Retry-After": "2"}) from None
    _remember(ctx, memo_key, store.Vote(fid, body.thumbs, comment, ts))
    return ThumbsOut(feedback_id=fid, event_id=body.event_id, duplicate=False, replaced=previous is not None)
