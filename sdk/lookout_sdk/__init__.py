"""lookout-sdk: send every LLM call of an application to Lookout, without slowing it down.

>>> from openai import OpenAI
>>> import lookout_sdk
>>> lookout = lookout_sdk.init(app_id="support-bot")  # LOOKOUT_ENDPOINT / LOOKOUT_API_KEY from the env
>>> client = lookout_sdk.wrap_openai(OpenAI())
>>> reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
>>> lookout.feedback(lookout_sdk.last_event_id(), thumbs=+1)

Or by hand: `lookout.log_call(model=..., input=..., output=..., tokens_in=..., ...)`, and
`@lookout_sdk.observe(...)` for any function. See sdk/README.md.
"""

from ._aio import AsyncLookout
from ._client import Lookout
from ._config import __version__
from ._context import context, last_event_id
from ._default import get_client, init, set_client
from ._delivery import Stats
from ._ids import uuid7
from ._observe import Observation, current_call, observe
from ._openai import wrap_openai

__all__ = [
    "AsyncLookout",
    "Lookout",
    "Observation",
    "Stats",
    "__version__",
    "context",
    "current_call",
    "get_client",
    "init",
    "last_event_id",
    "observe",
    "set_client",
    "uuid7",
    "wrap_openai",
]
