"""Vertex AI Gemini <-> OpenAI chat translation: the pure half of the Gemini adapter.

This is the one translation module the client imports; the work is split between its two
halves, ``gemini_request`` (ours -> Gemini) and ``gemini_response`` (Gemini -> ours), which
together are too long for one file (see ``app.backends``).

Everything here works on plain dicts in Gemini's REST JSON shape (camelCase, as on the wire),
not on google-genai's pydantic types. That keeps the translators pure, lets the tests run them
on recorded wire payloads (``tests/fakes/payloads/gemini/``) without the SDK, and lets the fake
server check that what reached it is what the translator produced. The thin client
(``app.backends.gemini_client``) converts at its edge: wire JSON -> SDK types by validating
it as JSON (so base64 fields decode to bytes) and SDK responses -> wire JSON with
``model_dump(mode="json", by_alias=True, exclude_none=True)``.

    to_gemini_request(openai_request) -> {"contents", "systemInstruction", "generationConfig",
                                          "tools", "toolConfig"}        (gemini_request)
    to_openai_completion(response, model=...) -> chat.completion        (gemini_response)
    StreamTranslator(model, id).feed(event) / .finish() -> chat.completion.chunk dicts
    error_from_gemini(provider, status, body, headers=None) -> RouterError  (gemini_response)
"""

from __future__ import annotations

from app.backends.gemini_request import to_gemini_request
from app.backends.gemini_response import (
    StreamTranslator,
    error_from_gemini,
    to_openai_completion,
    to_openai_usage,
)

__all__ = [
    "StreamTranslator",
    "error_from_gemini",
    "to_gemini_request",
    "to_openai_completion",
    "to_openai_usage",
]
