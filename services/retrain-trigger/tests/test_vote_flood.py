"""One end user tries to fire a retrain run: 60 thumbs down on one call from one feedback
token, each with another comment, through the real feedback service into the retrain
trigger. The feedback service answers 429 past the token's limit, the votes that got
through count as one (the voter's latest) in the thumbs-down rule, and no run starts,
though those votes alone would be enough samples at a 100% thumbs-down rate."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import serve_feedback

POLICY = """
    version: 1
    policies:
      - name: quality
        match: {app: shop, model: m1}
        cooldown: 1h
        require_approval: false
        dry_run: true   # a firing is recorded (requested, rejected) without training anything
        rules:
          - {name: thumbs, kind: thumbs_down_rate, window: 1h, min_samples: 3, fire_above: 0.3}
"""


@pytest.fixture
def feedback_url(harness):
    """The feedback service (thumbs API) on the harness's broker, store and loop."""
    yield from serve_feedback(harness, feedback_token_secret="token-secret-0123456789")


def test_sixty_thumbs_down_from_one_token_are_one_vote_and_fire_no_retrain_run(harness, feedback_url):
    h = harness
    service = h.start(h.settings(POLICY))
    [call] = h.calls(1)
    with httpx.Client(base_url=feedback_url, timeout=30,
                      headers={"Authorization": f"Bearer {h.stack.api_key}"}) as app_server:
        r = app_server.post("/v1/feedback/token", json={"event_id": str(call.event_id), "user_id": "mallory"})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
    with httpx.Client(base_url=feedback_url, timeout=30, headers={"X-Feedback-Token": token}) as browser:
        codes = [browser.post("/v1/feedback", json={"event_id": str(call.event_id), "thumbs": -1,
                                                     "comment": f"terrible, attempt {i}"}).status_code
                 for i in range(60)]
    accepted = codes.count(200)
    assert codes.count(429) == 60 - accepted and accepted >= 3, codes  # at least min_samples got through

    # Every vote that got through reached the trigger and is kept as evidence...
    sql = "SELECT count() FROM retrain_observations FINAL WHERE kind = 'thumbs' AND app_id = 'shop'"
    assert h.stack.wait_for(sql, accepted) == accepted
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ("shop", "m1") not in service.engine.windows:
        time.sleep(0.1)
    # ...but the rule sees one vote: the voter's latest on the call.
    window = service.engine.windows[("shop", "m1")]
    votes = [o for o in window.items if o.kind == "thumbs"]
    assert len(votes) == 1 and votes[0].value == 1.0
    time.sleep(2)  # any firing would have been recorded by now
    assert h.statuses() == {}  # no firing, so no run

    # Two more voters on other calls make three votes: the rule is blunted for nobody else.
    more = h.calls(2)
    h.thumbs(more, [True, True], at=1700)
    runs = h.wait_status("rejected")
    assert [s[:2] for s in runs.values()] == [["requested", "rejected"]]
