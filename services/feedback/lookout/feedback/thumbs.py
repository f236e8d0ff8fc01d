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

Identity on the record: the vote carries its call's model, model_version, environment
and ts, from the lookup that finds the call's app anyway (same row, same query; here, at
the edge, the one place the call is read), and names the thumbs of the vote it replaces,
so consumers (the task builder, the retrain trigger) and the versions_1m rollup count it
under the call's version without reading llm_calls or feedback_latest.

Duplicates: re-posting the vote an author already has (same thumbs and comment) is an
idempotent 200 with `"duplicate": true` and the stored feedback_id; nothing is produced.

Calls: a call is (app_id, event_id), since two apps may store the same event id. A token
names its app; a key bound to one app means that app; a key for every app ('*') names it
in `app_id`, or leaves it out when only one app has a call with that id (else 409).

Limits: each feedback token and each API key has a token bucket (LOOKOUT_FEEDBACK_TOKEN_*,
LOOKOUT_FEEDBACK_KEY_*; in memory, per instance); past it the answer is 429 with
Retry-After. The retrain rules count one vote per (author, call) whatever gets through.

PII: the comment is redacted with the app's PII policy (LOOKOUT_PII_*, the one ingest
applies to calls) and the end user's id is pseudonymised as ingest pseudonymises user_id,
before anything is produced, so neither reaches Kafka or storage in clear.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from lookout.core import ids
from lookout.core.api_errors import CHALLENGE, ApiError, error_router, require, scope_dependency, started
from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.events import AppId, Feedback, ShortText, now_utc
from lookout.core.session import Session

from . import store, tokens
from .limits import TokenBuckets, retry_after
from .privacy import Privacy
from .publish import FeedbackPublisher, Unavailable
from .settings import FeedbackSettings

ANONYMOUS = "anonymous"  # the author of a token minted without a user_id


class ThumbsIn(BaseModel):
    event_id: uuid.UUID
    thumbs: Literal[-1, 1]
    comment: Annotated[str, Field(max_length=10_000)] | None = None
    # With an API key: the end user who voted (pseudonymised here). Ignored with a token.
    user_id: ShortText | None = None
    # The call's app: needed only with a key for every app, when several apps have this event id.
    app_id: AppId | None = None


class ThumbsOut(BaseModel):
    feedback_id: uuid.UUID
    event_id: uuid.UUID
    duplicate: bool
    replaced: bool


class TokenIn(BaseModel):
    event_id: uuid.UUID
    user_id: ShortText | None = None
    ttl_s: Annotated[int, Field(ge=1, le=30 * 86_400)] | None = None
    app_id: AppId | None = None


class TokenOut(BaseModel):
    token: str
    expires_at: int


def feedback_id(event_id: uuid.UUID, source: str, author: str, ts_us: int) -> uuid.UUID:
    return ids.uuid_from(f"feedback/{event_id}/{source}/{author}/{ts_us}")


@dataclass
class ThumbsContext:
    settings: FeedbackSettings
    session: Session | None = None
    keys: ApiKeyStore | None = None
    publisher: FeedbackPublisher | None = None
    privacy: Privacy | None = None
    # Votes this instance produced recently, so a quick re-post is recognised as a
    # duplicate before the sink has stored the first one.
    recent: OrderedDict[tuple, store.Vote] | None = None
    # (app_id, event_id) -> the call: a stored call never changes, so hits need no query.
    apps: OrderedDict[tuple[str, uuid.UUID], store.CallRef] | None = None
    token_buckets: TokenBuckets = field(init=False)
    key_buckets: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.token_buckets = TokenBuckets(s.feedback_token_rate_per_min / 60, s.feedback_token_burst)
        self.key_buckets = TokenBuckets(s.feedback_key_rate_per_s, s.feedback_key_burst)


def _remember(ctx: ThumbsContext, key: tuple, vote: store.Vote) -> None:
    if ctx.recent is None:
        ctx.recent = OrderedDict()
    ctx.recent[key] = vote
    ctx.recent.move_to_end(key)
    while len(ctx.recent) > 10_000:
        ctx.recent.popitem(last=False)


def _limit(buckets: TokenBuckets, key: str, what: str) -> None:
    wait = buckets.take(key)
    if wait:
        raise ApiError(429, f"too many requests for this {what}; retry in {retry_after(wait)} s",
                       headers={"Retry-After": retry_after(wait)})


def build_router(ctx: ThumbsContext) -> APIRouter:
    router = error_router(tags=["feedback"])
    feedback_key = scope_dependency(lambda: ctx.keys, "feedback")

    known: OrderedDict[tuple[str, uuid.UUID], store.CallRef] = ctx.apps if ctx.apps is not None else OrderedDict()
    ctx.apps = known

    def missing(event_id: uuid.UUID) -> ApiError:
        # Another app's call is reported as missing: its existence is not this caller's business.
        return ApiError(404, f"no call with event_id {event_id}", field="event_id")

    async def app_call(app_id: str, event_id: uuid.UUID) -> store.CallRef:
        call = known.get((app_id, event_id))
        if call is None:
            call = await run_in_threadpool(store.call_ref, started(ctx.session), app_id, event_id)
        if call is None:
            raise missing(event_id)
        known[(app_id, event_id)] = call
        known.move_to_end((app_id, event_id))
        if len(known) > 100_000:
            known.popitem(last=False)
        return call

    async def key_call(key: ApiKey, event_id: uuid.UUID, app_id: str | None) -> store.CallRef:
        """The call a key acts on: in the key's app, or the one named, or the only one."""
        if app_id is not None:
            require(key, "feedback", app_id)
            return await app_call(app_id, event_id)
        if key.app_id != "*":
            return await app_call(key.app_id, event_id)
        found = await run_in_threadpool(store.call_refs, started(ctx.session), event_id)
        if not found:
            raise missing(event_id)
        if len(found) > 1:
            raise ApiError(409, f"several apps have a call with event_id {event_id}; name the app in app_id",
                           field="app_id")
        return found[0]

    @router.post("/v1/feedback/token")
    async def mint_token(body: TokenIn, key: ApiKey = Depends(feedback_key)) -> TokenOut:
        _limit(ctx.key_buckets, key.key_id, "API key")
        if not ctx.settings.feedback_token_secret:
            raise ApiError(503, "feedback tokens are off: LOOKOUT_FEEDBACK_TOKEN_SECRET is not set")
        app_id = (await key_call(key, body.event_id, body.app_id)).app_id
        token, expires = tokens.mint(
            ctx.settings.feedback_token_secret,
            body.event_id,
            app_id,
            body.user_id or ANONYMOUS,
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
            if body.app_id is not None and body.app_id != claims.app_id:
                raise ApiError(401, "this feedback token is for another app", field="app_id", headers=CHALLENGE)
            # Per token: one browser cannot flood a call's votes however it varies the comment.
            _limit(ctx.token_buckets, x_feedback_token.rpartition(".")[2], "feedback token")
            call = await app_call(claims.app_id, body.event_id)
            user, fallback = (None if claims.author == ANONYMOUS else claims.author), ANONYMOUS
        else:
            # A token or a key: the route reads the header itself (a token needs no key).
            key = await feedback_key(authorization)
            _limit(ctx.key_buckets, key.key_id, "API key")
            call = await key_call(key, body.event_id, body.app_id)
            user, fallback = body.user_id, f"key:{key.key_id}"
        # The end user's id as ingest stores the call's user_id, so the two still join.
        author = started(ctx.privacy).pseudonym(user) if user else fallback
        return await _vote(ctx, body, call, author)

    return router


async def _vote(ctx: ThumbsContext, body: ThumbsIn, call: store.CallRef, author: str) -> ThumbsOut:
    comment = body.comment or ""
    if comment:
        comment = await run_in_threadpool(started(ctx.privacy).redact, call.app_id, comment)
    memo_key = (call.app_id, body.event_id, author)
    previous = (ctx.recent or {}).get(memo_key)
    if previous is None:
        previous = await run_in_threadpool(store.latest_vote, started(ctx.session), call.app_id, body.event_id,
                                           "end_user", author)
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
        comment=comment or None,
        **store.identity(call),
        # The per-version rollup takes the replaced vote back (a comment-only change too:
        # it is a new row all the same).
        replaces_thumbs=previous.thumbs if previous is not None else None,
    )
    try:
        await started(ctx.publisher).publish(record)
    except Unavailable as exc:
        raise ApiError(503, f"{exc}; retry later", headers={"Retry-After": "2"}) from None
    _remember(ctx, memo_key, store.Vote(fid, body.thumbs, comment, ts))
    return ThumbsOut(feedback_id=fid, event_id=body.event_id, duplicate=False, replaced=previous is not None)
