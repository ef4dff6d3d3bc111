"""OpenAI wire models for requests: strict on what they check, lenient on what they do not know.

Unknown fields are accepted and passed through to backends, so new client versions keep
working. Known fields are checked for type and range; a bad one is a 400 naming the ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.feedback.service import COMMENT_CHARS


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(Lenient):
    type: str
    text: str | None = None


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(Lenient):
    include_usage: bool | None = None


class ChatCompletionRequest(Lenient):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1)  # the ceiling is config: limits.n_ceiling
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    # Router extensions (sent by the OpenAI SDKs through extra_body).
    routing_strategy: str | None = None
    max_latency_ms: int | None = Field(default=None, ge=1)
    quality_margin: float | None = Field(default=None, ge=0, le=1)

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def body(self) -> dict[str, Any]:
        """The request as a plain dict, unknown fields included, unset fields left out."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a rating of one answer, named by its ``x-request-id``. The router's
    own endpoint, so it is strict: an unknown field, or a value of the wrong type, is a 400
    naming it. Which of ``score`` and ``rating`` is sent is the service's check (exactly one)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=256)
    score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    rating: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=COMMENT_CHARS)
