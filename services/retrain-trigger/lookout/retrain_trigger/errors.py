"""Errors the retrain trigger's run logic raises and its HTTP API answers: a module of
their own, so the API and the service each import them and never each other."""

from __future__ import annotations

from lookout.core.api_errors import ApiError


class RunError(ApiError):
    """A decision that cannot be made on a run: no such open run (404), or one no longer
    waiting for a decision (409). The API answers it in the error envelope as it is."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, field="run_id")
