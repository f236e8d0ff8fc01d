"""The reviewer API behind the /review page: login, claim the next task, submit, skip,
release, progress, and admin management of reviewer accounts.

Auth is a session cookie (HttpOnly, SameSite=Strict, Secure over https: see login.py);
every state-changing request must also carry the session's CSRF token in X-CSRF-Token,
which a cross-site page cannot read.

Login limits (in memory, per instance): LOOKOUT_REVIEW_LOGIN_MAX_FAILURES failed logins to
one account name within LOOKOUT_REVIEW_LOGIN_WINDOW_S lock that name, and
LOOKOUT_REVIEW_LOGIN_ADDRESS_MAX_FAILURES from one client address block the address, both
for LOOKOUT_REVIEW_LOGIN_LOCKOUT_S: every login there gets 429 with Retry-After, a right
password too. Names that are no account count and lock the same way, and the answers do
not differ, so the limits tell nobody which accounts exist. A successful login clears its
account's count; an admin setting a new password unlocks the account.

Tasks are calls, (app_id, event_id): the task routes take `app_id` as a query parameter,
which may be left out when one app only has a task with that event id.

Reviews are redacted with the app's PII policy (comment and corrected answer become
training data) and signed (lookout.core.review_signing) before they are produced. A review
carries its call's identity (model, model version, environment, the call's ts), read once
here where the reviewer's call is known, so no consumer reads the call back.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Cookie, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from lookout.core import ids, review_signing
from lookout.core.api_errors import ApiError, error_router, started
from lookout.core.app_map import AppMap
from lookout.core.auth import same_secret
from lookout.core.events import AppId, Feedback, ShortText, now_utc
from lookout.core.session import Session

from . import queue, retrain_ui, store
from .accounts import Accounts, LoginSession, Reviewer
from .claims import ClaimLog, ClaimTimeout
from .limits import FailureCounter, retry_after
from .login import Proxies, parse_networks
from .privacy import Privacy
from .publish import FeedbackPublisher, Unavailable
from .runtime import RuntimeSettings
from .settings import FeedbackSettings, Rate

COOKIE = "lookout_review"
# A 401 names the credential it wants (RFC 9110): here a session cookie from /login, not a key.
CHALLENGE = {"WWW-Authenticate": 'Cookie realm="lookout-review"'}


class LoginIn(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class PasswordIn(BaseModel):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=8, max_length=1024)]


class NextIn(BaseModel):
    app_id: ShortText | None = None
    kind: ShortText | None = None


class ReviewIn(BaseModel):
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    thumbs: Literal[-1, 1] | None = None
    labels: list[ShortText] = Field(default_factory=list, max_length=64)
    corrected_output: Annotated[str, Field(max_length=1_000_000)] | None = None
    comment: Annotated[str, Field(max_length=100_000)] | None = None


class ReviewerIn(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")]
    password: Annotated[str, Field(min_length=8, max_length=1024)]
    role: Literal["viewer", "reviewer", "admin"] = "reviewer"
    apps: list[ShortText] = Field(default_factory=list, max_length=1000)


class ReviewerPatch(BaseModel):
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None
    role: Literal["viewer", "reviewer", "admin"] | None = None
    apps: list[ShortText] | None = Field(default=None, max_length=1000)
    disabled: bool | None = None


Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^,]+$")]
Threshold = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class RuntimePatch(BaseModel):
    """What an admin changes; fields left out keep their value."""

    labels: list[Label] | None = Field(default=None, min_length=1, max_length=64)
    toxicity_threshold: Threshold | None = None
    judge_threshold: Threshold | None = None
    audit_rate: Rate | None = None
    audit_app_rates: dict[AppId, Rate] | None = Field(default=None, max_length=1000)


def _runtime_out(s: FeedbackSettings) -> dict:
    return {"labels": s.labels(), "toxicity_threshold": s.review_toxicity_threshold,
            "judge_threshold": s.review_judge_threshold, "audit_rate": s.review_audit_rate,
            "audit_app_rates": s.review_audit_app_rates.as_dict()}


@dataclass
class ReviewContext:
    settings: FeedbackSettings
    session: Session | None = None
    accounts: Accounts | None = None
    claims: ClaimLog | None = None
    publisher: FeedbackPublisher | None = None
    runtime: RuntimeSettings | None = None
    producer: AIOKafkaProducer | None = None  # retrain decisions go to llm.retrain.status
    privacy: Privacy | None = None

    async def current(self) -> FeedbackSettings:
        """The settings with the admin's run-time changes (labels, thresholds, rates)."""
        return self.settings if self.runtime is None else await run_in_threadpool(self.runtime.current)


@dataclass(frozen=True)
class Caller:
    session: LoginSession
    reviewer: Reviewer


def _me(caller: Caller, settings: FeedbackSettings) -> dict:  # settings: the current ones
    r = caller.reviewer
    return {"username": r.username, "role": r.role, "apps": list(r.apps), "csrf": caller.session.csrf,
            "labels": settings.labels()}


def build_router(ctx: ReviewContext) -> APIRouter:
    router = error_router(prefix="/review/api", tags=["review"])

    async def caller(lookout_review: Annotated[str | None, Cookie()] = None) -> Caller:
        found = await run_in_threadpool(started(ctx.accounts).session, lookout_review)
        if found is None:
            raise ApiError(401, "not logged in", headers=CHALLENGE)
        return Caller(*found)

    async def writer(c: Caller = Depends(caller), x_csrf_token: Annotated[str | None, Header()] = None) -> Caller:
        if not same_secret(x_csrf_token, c.session.csrf):
            raise ApiError(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return c

    async def reviewer(c: Caller = Depends(writer)) -> Caller:
        if c.reviewer.role not in ("reviewer", "admin"):
            raise ApiError(403, "viewers cannot review")
        return c

    async def admin(c: Caller = Depends(writer)) -> Caller:
        if c.reviewer.role != "admin":
            raise ApiError(403, "admins only")
        return c

    ranked = queue.RankCache()
    s = ctx.settings
    proxies = Proxies(parse_networks(s.review_trusted_proxies))
    accounts_failed = FailureCounter(s.review_login_max_failures, s.review_login_window_s, s.review_login_lockout_s)
    addresses_failed = FailureCounter(s.review_login_address_max_failures, s.review_login_window_s,
                                      s.review_login_lockout_s)
    # Password hashing is memory-hard CPU work: a few at once, so a login flood cannot take
    # every worker thread from the other requests.
    hashing = asyncio.Semaphore(4)

    def locked(seconds: float) -> ApiError:
        return ApiError(429, f"too many failed logins; try again in {retry_after(seconds)} s",
                        headers={"Retry-After": retry_after(seconds)})

    def fetcher(username: str):
        # Without overlap the ranking is the same for every reviewer of the same filter.
        who = username if ctx.settings.review_overlap > 0 else ""

        async def fetch(f: queue.QueueFilter) -> list[queue.Candidate]:
            return await ranked.get((f, who), lambda: run_in_threadpool(
                queue.candidates, started(ctx.session), f, ctx.settings.review_age_weight, who))

        return fetch

    async def visible_task(c: Caller, event_id: uuid.UUID, app_id: str | None) -> str:
        # A task of an app the reviewer is not assigned to does not exist for them.
        with_task = await run_in_threadpool(queue.task_apps, started(ctx.session), event_id)
        apps = [a for a in with_task if c.reviewer.sees(a)]
        if app_id is not None:
            apps = [a for a in apps if a == app_id]
        if not apps:
            raise ApiError(404, f"no review task for {event_id}", field="event_id")
        if len(apps) > 1:
            raise ApiError(409, f"several apps have a review task for {event_id}; name the app in app_id",
                           field="app_id")
        return apps[0]

    async def progress(c: Caller, f: queue.QueueFilter) -> dict:
        done = await run_in_threadpool(queue.done_count, started(ctx.session), c.reviewer.username)
        left = await run_in_threadpool(queue.open_count, started(ctx.session), f)
        return {"done": done, "open": left}

    @router.post("/login")
    async def login(body: LoginIn, request: Request, response: Response) -> dict:
        origin = proxies.origin(request)
        account = body.username.casefold()
        wait = max(accounts_failed.locked_for(account), addresses_failed.locked_for(origin.address))
        if wait:
            raise locked(wait)
        async with hashing:
            found = await run_in_threadpool(started(ctx.accounts).login, body.username, body.password)
        if found is None:
            wait = max(accounts_failed.fail(account), addresses_failed.fail(origin.address))
            if wait:
                raise locked(wait)
            raise ApiError(401, "wrong user name or password", headers=CHALLENGE)
        accounts_failed.clear(account)
        cookie, session = found
        response.set_cookie(COOKIE, cookie, max_age=ctx.settings.session_ttl_s, httponly=True, samesite="strict",
                            secure=ctx.settings.cookie_secure or origin.https, path="/")
        reviewer = await run_in_threadpool(started(ctx.accounts).get, body.username)
        if reviewer is None:  # the account the login just checked is not there any more
            raise ApiError(401, "wrong user name or password", headers=CHALLENGE)
        return _me(Caller(session, reviewer), await ctx.current())

    @router.post("/password")
    async def change_password(body: PasswordIn, request: Request, c: Caller = Depends(writer),
                              lookout_review: Annotated[str | None, Cookie()] = None) -> dict:
        """The caller's own password; every other session of the account ends."""
        account = c.reviewer.username.casefold()
        origin = proxies.origin(request)
        wait = max(accounts_failed.locked_for(account), addresses_failed.locked_for(origin.address))
        if wait:
            raise locked(wait)
        async with hashing:
            ok = await run_in_threadpool(started(ctx.accounts).change_password, c.reviewer.username,
                                         body.current_password, body.new_password, lookout_review or "")
        if not ok:
            # A stolen session must not become a way around the login limits.
            wait = max(accounts_failed.fail(account), addresses_failed.fail(origin.address))
            if wait:
                raise locked(wait)
            raise ApiError(403, "the current password is wrong", field="current_password")
        return {"ok": True}

    @router.post("/logout")
    async def logout(response: Response, c: Caller = Depends(writer),
                     lookout_review: Annotated[str | None, Cookie()] = None) -> dict:
        await run_in_threadpool(started(ctx.accounts).logout, lookout_review or "")
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    @router.get("/me")
    async def me(c: Caller = Depends(caller)) -> dict:
        return _me(c, await ctx.current())

    @router.get("/progress")
    async def get_progress(c: Caller = Depends(caller), app_id: str | None = None, kind: str | None = None) -> dict:
        return await progress(c, queue.QueueFilter(c.reviewer.app_scope(), app_id, kind))

    @router.post("/next")
    async def next_task(body: NextIn, c: Caller = Depends(reviewer)) -> dict:
        f = queue.QueueFilter(c.reviewer.app_scope(), body.app_id, body.kind)
        try:
            got = await queue.claim_next(started(ctx.claims), c.reviewer.username, f, fetcher(c.reviewer.username),
                                         ctx.settings.review_overlap)
        except ClaimTimeout as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "2"}) from None
        if got is None:
            return {"task": None, "progress": await progress(c, f)}
        task, expires_ms = got
        call = await run_in_threadpool(queue.call_detail, started(ctx.session), task.app_id, task.event_id)
        return {
            "task": {"event_id": str(task.event_id), "app_id": task.app_id, "reasons": task.reasons,
                     "kinds": task.kinds, "priority": task.priority, "lease_expires_ms": expires_ms, "call": call},
            "progress": await progress(c, f),
        }

    async def _simple(op: Literal["skip", "release"], event_id: uuid.UUID, app_id: str | None, c: Caller) -> dict:
        app_id = await visible_task(c, event_id, app_id)
        try:
            verdict = await started(ctx.claims).request(op, queue.task_key(app_id, event_id), c.reviewer.username)
        except ClaimTimeout as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "2"}) from None
        if not verdict.won:
            raise ApiError(409, verdict.reason)
        return {"ok": True}

    @router.post("/tasks/{event_id}/skip")
    async def skip(event_id: uuid.UUID, c: Caller = Depends(reviewer), app_id: str | None = None) -> dict:
        return await _simple("skip", event_id, app_id, c)

    @router.post("/tasks/{event_id}/release")
    async def release(event_id: uuid.UUID, c: Caller = Depends(reviewer), app_id: str | None = None) -> dict:
        return await _simple("release", event_id, app_id, c)

    @router.post("/tasks/{event_id}/submit")
    async def submit(event_id: uuid.UUID, body: ReviewIn, c: Caller = Depends(reviewer),
                     app_id: str | None = None) -> dict:
        app_id = await visible_task(c, event_id, app_id)
        task = queue.task_key(app_id, event_id)
        labels = (await ctx.current()).labels()
        bad = [label for label in body.labels if label not in labels]
        if bad:
            raise ApiError(422, f"unknown label {bad[0]!r}", field="labels")
        if body.rating is None and body.thumbs is None and not body.labels and not body.corrected_output:
            raise ApiError(422, "a review needs a rating, thumbs, labels or a corrected answer")
        # Redacted before the claim is spent: the texts become training data, and a 1 MB
        # answer's redaction runs in a worker thread, not on the loop.
        corrected = await run_in_threadpool(started(ctx.privacy).redact, app_id, body.corrected_output or "")
        note = await run_in_threadpool(started(ctx.privacy).redact, app_id, body.comment or "")
        # The call this review is about, read once here: the review carries its identity.
        # (None: the call is not stored; the review is kept all the same, without it.)
        call = await run_in_threadpool(store.call_ref, started(ctx.session), app_id, event_id)
        try:
            verdict = await started(ctx.claims).request("done", task, c.reviewer.username)
        except ClaimTimeout as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "2"}) from None
        if not verdict.won:
            raise ApiError(409, f"cannot submit: {verdict.reason}")
        # The log accepted this review and no other: only now is it produced and recorded.
        fid = ids.uuid_from(f"review/{app_id}/{event_id}/{c.reviewer.username}")
        unsigned = Feedback(feedback_id=fid, event_id=event_id, ts=now_utc(), app_id=app_id, source="reviewer",
                            author=c.reviewer.username, thumbs=body.thumbs, rating=body.rating, labels=body.labels,
                            corrected_output=corrected or None, comment=note or None,
                            **(store.identity(call) if call is not None else {}))
        record = review_signing.signed(ctx.settings.review_signing_secret, unsigned)
        ts = record.ts
        for attempt in range(3):
            try:
                await started(ctx.publisher).publish(record)
                break
            except Unavailable as exc:
                if attempt == 2:
                    raise ApiError(503, f"review accepted but not yet stored: {exc}") from None
                await asyncio.sleep(1)
        needed = started(ctx.claims).state.tasks[task].need
        await started(ctx.session).ainsert("review_done", [[event_id, app_id, c.reviewer.username, fid, needed, ts]],
                                           ["event_id", "app_id", "reviewer", "feedback_id", "needed", "ts"])
        return {"feedback_id": str(fid)}

    @router.get("/admin/agreement")
    async def get_agreement(c: Caller = Depends(caller)) -> dict:
        if c.reviewer.role != "admin":
            raise ApiError(403, "admins only")
        return await run_in_threadpool(queue.agreement, started(ctx.session), None)

    @router.get("/admin/reviewers")
    async def list_reviewers(c: Caller = Depends(caller)) -> dict:
        if c.reviewer.role != "admin":
            raise ApiError(403, "admins only")
        found = await run_in_threadpool(started(ctx.accounts).list)
        return {"reviewers": [{"username": r.username, "role": r.role, "apps": list(r.apps),
                               "disabled": r.disabled} for r in found]}

    @router.post("/admin/reviewers", status_code=201)
    async def create_reviewer(body: ReviewerIn, c: Caller = Depends(admin)) -> dict:
        if await run_in_threadpool(started(ctx.accounts).get, body.username):
            raise ApiError(409, f"reviewer {body.username!r} exists", field="username")
        r = await run_in_threadpool(lambda: started(ctx.accounts).upsert(body.username, password=body.password,
                                                                         role=body.role, apps=body.apps))
        return {"username": r.username, "role": r.role, "apps": list(r.apps)}

    @router.patch("/admin/reviewers/{username}")
    async def patch_reviewer(username: str, body: ReviewerPatch, c: Caller = Depends(admin),
                             lookout_review: Annotated[str | None, Cookie()] = None) -> dict:
        if not await run_in_threadpool(started(ctx.accounts).get, username):
            raise ApiError(404, f"no reviewer {username!r}", field="username")
        # An admin changing their own password keeps the session they did it from.
        keep = lookout_review if username == c.reviewer.username else None
        r = await run_in_threadpool(lambda: started(ctx.accounts).upsert(
            username, password=body.password, role=body.role, apps=body.apps, disabled=body.disabled,
            keep_session=keep))
        if body.password is not None:
            accounts_failed.clear(username.casefold())  # a new password unlocks the account
        return {"username": r.username, "role": r.role, "apps": list(r.apps), "disabled": r.disabled}

    @router.get("/admin/retrain/runs")
    async def retrain_runs(c: Caller = Depends(caller)) -> dict:
        if c.reviewer.role != "admin":
            raise ApiError(403, "admins only")
        runs = await run_in_threadpool(retrain_ui.awaiting, started(ctx.session), None)
        return {"runs": [r for r in runs if c.reviewer.sees(r["app_id"])]}

    @router.post("/admin/retrain/{run_id}/{decision}")
    async def retrain_decide(run_id: uuid.UUID, decision: Literal["approve", "reject"],
                             c: Caller = Depends(admin)) -> dict:
        found = await run_in_threadpool(retrain_ui.awaiting, started(ctx.session), run_id)
        if not found or not c.reviewer.sees(found[0]["app_id"]):
            raise ApiError(404, f"no retrain run {run_id} awaiting approval", field="run_id")
        try:
            ev = await retrain_ui.publish_decision(started(ctx.producer), ctx.settings.topic_prefix, found[0],
                                                   decision == "approve", c.reviewer.username,
                                                   ctx.settings.produce_timeout_s)
        except Exception as exc:  # aiokafka raises several types for a broker that is away
            raise ApiError(503, f"decision not recorded, Kafka refused it: {type(exc).__name__}",
                           headers={"Retry-After": "2"}) from None
        return {"run_id": str(run_id), "status": ev.status}

    @router.get("/admin/settings")
    async def get_runtime(c: Caller = Depends(caller)) -> dict:
        if c.reviewer.role != "admin":
            raise ApiError(403, "admins only")
        return _runtime_out(await ctx.current())

    @router.patch("/admin/settings")
    async def patch_runtime(body: RuntimePatch, c: Caller = Depends(admin)) -> dict:
        values: dict = {}
        if body.labels is not None:
            labels = [label.strip() for label in body.labels]
            if any(not label for label in labels) or len(set(labels)) != len(labels):
                raise ApiError(422, "labels must be distinct and not blank", field="labels")
            values["review_labels"] = ",".join(labels)
        if body.toxicity_threshold is not None:
            values["review_toxicity_threshold"] = body.toxicity_threshold
        if body.judge_threshold is not None:
            values["review_judge_threshold"] = body.judge_threshold
        if body.audit_rate is not None:
            values["review_audit_rate"] = body.audit_rate
        if body.audit_app_rates is not None:
            values["review_audit_app_rates"] = AppMap(body.audit_app_rates)
        if not values:
            return _runtime_out(await ctx.current())
        updated = await run_in_threadpool(started(ctx.runtime).update, values, c.reviewer.username)
        return _runtime_out(updated)

    return router


