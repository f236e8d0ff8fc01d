"""OpenLIT: GenAI conventions (read by genai.py) plus a few attributes of its own: the
environment and app on each span (`deployment.environment`, `service.name`), the end
user in `gen_ai.request.user`, and a cost it computed itself (`gen_ai.usage.cost`, from
OpenLIT's price list; 0 when it had none)."""

from __future__ import annotations

from .spans import Reading, SpanView, number

NAME = "openlit"


def read(view: SpanView, reading: Reading) -> None:
    if view.text("telemetry.sdk.name") != "openlit" and not view.scope.startswith("openlit"):
        return
    reading.fill(user_id=view.text("gen_ai.request.user"))
    cost = number(view.take("gen_ai.usage.cost"))
    if cost is not None and cost > 0:
        reading.fill(client_cost=cost)
    reading.fill(span_environment=view.text("deployment.environment"), span_app=view.text("service.name"))
    view.take("gen_ai.client.token.usage", "openlit.agent.version_hash", "gen_ai.sdk.version")
