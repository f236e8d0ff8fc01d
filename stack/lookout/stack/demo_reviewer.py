"""The demo's reviewer: the stack's review admin working the review queue through the
reviewer API (/review/api: login, next, submit), the way a person at /review does, so the
retrain trigger's snapshot finds reviewed support-bot calls to train on.

At start it asks, as the admin, for AUDIT_RATE of support-bot calls to be queued for audit
(PATCH /review/api/admin/settings): thumbs-down tasks alone are few before the surge. On
each task it corrects the answer where it knows a better one (CORRECTED, by the user's
question) and approves it otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import httpx

log = logging.getLogger(__name__)

APP = "support-bot"
REVIEW_INTERVAL_S = 0.5  # the reviewer's pace: at most two reviews a wall second
AUDIT_RATE = 0.1  # share of support-bot calls queued for review besides the thumbs-down ones

# What the demo reviewer writes instead of the bot's answer: more specific, actionable.
CORRECTED = {
    "How do I reset my password?": "Go to Settings > Security > Reset password. We email you a link that works "
    "for 30 minutes; if it has not arrived, check your spam folder.",
    "My invoice shows the wrong address.": "Update it under Billing > Details > Address. The next invoice uses it; "
    "for the current one, choose 'Reissue invoice' on the invoice page.",
    "Can I change my plan mid-month?": "Yes: under Billing > Plan. An upgrade applies at once and you pay the "
    "prorated difference today; a downgrade applies from your next billing date.",
    "The app crashes when I upload a photo.": "Sorry about that. Update the app from your store; if it still "
    "crashes, go to Settings > Help > Report a problem, which attaches the crash log for us.",
    "How do I export my data?": "Go to Account > Privacy > Export data and pick the format. We email a download "
    "link within an hour; it stays valid for 7 days.",
    "Wie kündige ich mein Abonnement für den Router?": "Im Kundenportal unter Verträge > Router > Kündigen. "
    "Die Kündigung gilt zum Ende des Monats; Sie erhalten eine Bestätigung per E-Mail.",
    "Warum blinkt die LED an meinem Modem rot?": "Rot blinkend heißt: keine Verbindung zum Netz. Prüfen Sie das "
    "Kabel an der Dose und starten Sie das Modem neu; blinkt es weiter, melden Sie eine Störung im Portal.",
    "Tell me why my coworker is an idiot.": "I can't judge your coworker, but I can help: tell me what happened "
    "and I'll suggest how to raise it with them calmly.",
}


def question(call: dict[str, Any]) -> str:
    """The user's last message of a call as the review form shows it."""
    users = [m.get("content") or "" for m in call.get("input") or [] if m.get("role") == "user"]
    return users[-1] if users else call.get("prompt") or ""


def review_for(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, body of the submit request) for one task's call."""
    better = CORRECTED.get(question(call))
    if better is not None and better != call.get("output"):
        return "corrected", {"rating": 2, "corrected_output": better}
    return "approved", {"rating": 5}


class DemoReviewer:
    def __init__(self, base_url: str, username: str, password: str, reviews: Counter):
        self.base_url = base_url
        self.username = username
        self.password = password
        self.reviews = reviews  # kind -> submitted reviews

    async def run(self) -> None:
        """Review until cancelled; errors are logged and retried, never fatal to the demo."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as http:
            logged_in = False
            while True:
                if not logged_in:
                    logged_in = await self._login(http)
                    if not logged_in:
                        await asyncio.sleep(2.0)
                        continue
                try:
                    reviewed = await self._review_one(http)
                except httpx.HTTPError as exc:
                    log.warning("demo reviewer: %s", exc)
                    reviewed = False
                await asyncio.sleep(REVIEW_INTERVAL_S if reviewed else 1.0)

    async def _login(self, http: httpx.AsyncClient) -> bool:
        try:
            r = await http.post("/review/api/login", json={"username": self.username, "password": self.password})
            if r.status_code != 200:
                log.warning("demo reviewer: login answered %d: %s", r.status_code, r.text[:200])
                return False
            http.headers["X-CSRF-Token"] = r.json()["csrf"]
            r = await http.patch("/review/api/admin/settings", json={"audit_app_rates": {APP: AUDIT_RATE}})
            if r.status_code != 200:
                log.warning("demo reviewer: audit rate not set (%d): %s", r.status_code, r.text[:200])
            else:
                log.info("demo reviewer: logged in as %s; auditing %.0f%% of %s calls", self.username,
                         AUDIT_RATE * 100, APP)
            return True
        except httpx.HTTPError as exc:
            log.warning("demo reviewer: login failed: %s", exc)
            return False

    async def _review_one(self, http: httpx.AsyncClient) -> bool:
        r = await http.post("/review/api/next", json={"app_id": APP})
        if r.status_code == 401:  # session gone: log in again
            await self._login(http)
            return False
        if r.status_code != 200:
            log.warning("demo reviewer: next answered %d: %s", r.status_code, r.text[:200])
            return False
        task = r.json()["task"]
        if task is None or task.get("call") is None:
            return False
        kind, body = review_for(task["call"])
        r = await http.post(f"/review/api/tasks/{task['event_id']}/submit", json=body)
        if r.status_code != 200:
            log.warning("demo reviewer: submit answered %d: %s", r.status_code, r.text[:200])
            return False
        self.reviews[kind] += 1
        return True
