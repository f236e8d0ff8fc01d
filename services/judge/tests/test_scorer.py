"""The batch scorer without Kafka: what is scored, and one bad text does not sink a batch."""

from __future__ import annotations

from calls import call

from lookout.core.events import Message
from lookout.judge.scorer import Scorer, user_input
from lookout.judge.toxicity import ProfanityModel


class _Picky:
    """A toxicity model that fails on one text (and so on any batch holding it)."""

    evaluator, version, labels = "picky", "1", ("toxicity",)

    def predict(self, texts):
        if any("boom" in t for t in texts):
            raise RuntimeError("cannot score this")
        return [{"toxicity": len(t) / 1000} for t in texts]


def test_prompt_toxicity_is_the_users_new_message_not_the_system_prompt_or_history():
    conversation = call(input=[
        Message(role="system", content="Never say shit or fuck to customers."),
        Message(role="user", content="Where is my parcel?"),
        Message(role="assistant", content="It left the depot."),
        Message(role="user", content="When will it arrive?"),
    ], prompt=None)
    assert user_input(conversation) == "When will it arrive?"
    assert user_input(call(prompt="Explicit prompt")) == "Explicit prompt"


async def test_scores_of_a_batch_with_profanity_and_nothing_else_configured():
    clean, rude = call(output="Happy to help."), call(output="Go fuck yourself.")
    scores = await Scorer(toxicity=ProfanityModel()).score([clean, rude])
    by = {(s.event_id, s.name): s.value for s in scores}
    names = ("toxicity.profanity", "toxicity.prompt.profanity")
    assert set(by) == {(c.event_id, n) for c in (clean, rude) for n in names}
    assert by[(rude.event_id, "toxicity.profanity")] > 0.5 > by[(clean.event_id, "toxicity.profanity")]


async def test_a_text_the_model_cannot_score_loses_only_its_own_score():
    good, bad = call(output="fine answer"), call(output="boom")
    scores = await Scorer(toxicity=_Picky()).score([good, bad])
    names = {(s.event_id, s.name) for s in scores}
    assert (good.event_id, "toxicity.toxicity") in names
    assert (bad.event_id, "toxicity.prompt.toxicity") in names  # its prompt was fine
    assert (bad.event_id, "toxicity.toxicity") not in names
