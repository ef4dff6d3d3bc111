"""The router's one error tree.

    RouterError                      500  api_error              (never shows internals)
    ├── InvalidRequestError          400  invalid_request_error  (a bad field; ``param`` names it)
    │   ├── ContextWindowExceededError 400  code=context_length_exceeded
    │   └── UnsupportedFeatureError  400  code=unsupported_feature
    ├── AuthenticationError          401  authentication_error
    ├── PermissionDeniedError        403  permission_error
    ├── NotFoundError                404  not_found_error        (unknown model or strategy)
    │   └── RequestNotFoundError     404  code=request_not_found (no answer of the caller's under
    │                                                            a request id)
    ├── ConflictError                409  invalid_request_error
    │   └── FeedbackExistsError      409  code=feedback_exists   (the answer is rated already)
    ├── PayloadTooLargeError         413  invalid_request_error
    ├── RateLimitError               429  rate_limit_error       (a client limit; carries Retry-After)
    │   └── BudgetExhaustedError     429  insufficient_quota
    ├── NoHealthyBackendError        503  service_unavailable    (nothing in the plan could serve)
    └── UpstreamError                502  upstream_error         (a backend failed)       retryable
        ├── UpstreamTimeoutError     504                                                  retryable
        ├── UpstreamRateLimitedError 429                                                  retryable
        ├── UpstreamUnavailableError 503  (5xx, overloaded, connection lost, stream cut)  retryable
        ├── UpstreamNotFoundError    502  (the provider does not know the model id)       retryable
        ├── UpstreamAuthError        502  (the provider refused the router's credentials) not retryable
        └── UpstreamBadRequestError  400  (the backend refused the request)               not retryable
            └── ContentFilterError   400  code=content_filter                             not retryable

A backend's "context too long" is a ``ContextWindowExceededError``: the client's request, not the
backend, is at fault, and a larger-window model may still take it.

Vendor and transport errors are mapped onto these at one boundary per backend; retries,
fallbacks and breakers branch only on ``retryable`` and the class.

``retryable`` is the router's own question (try this target again, or the next one?);
``retry_helps`` is the client's: False when the same request would fail the same way a moment
later (a bad field, a missing provider key, no model with the window or capability it needs, a
daily budget spent). Such answers carry ``x-should-retry: false``, which the OpenAI and
Anthropic SDKs obey instead of retrying by status (they retry 409, 429 and 5xx otherwise).
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    """Base of every error the router reports to a client."""

    status_code = 500
    error_type = "api_error"
    code: str | None = None
    retryable = False
    retry_helps = True  # may the client's retry of the same request succeed? (x-should-retry)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        retry_helps: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        if retry_helps is not None:
            self.retry_helps = retry_helps


class LastingReason(str):
    """Why a model cannot serve, when that holds until the router is reconfigured or restarted
    (its provider's key is missing, no backend is built for it), unlike a replica that is down or
    an open circuit breaker: a request that only such models could serve gets no retry hint."""

    __slots__ = ()


class BudgetReason(str):
    """Why a model cannot serve when a daily budget is the cause: a request that only such
    models could serve is refused as over budget (429), not as a backend failure."""

    __slots__ = ()


class InvalidRequestError(RouterError):
    status_code = 400
    error_type = "invalid_request_error"
    retry_helps = False


class ContextWindowExceededError(InvalidRequestError):
    code = "context_length_exceeded"


class UnsupportedFeatureError(InvalidRequestError):
    code = "unsupported_feature"


class AuthenticationError(RouterError):
    status_code = 401
    error_type = "authentication_error"
    retry_helps = False
    code = "invalid_api_key"


class PermissionDeniedError(RouterError):
    status_code = 403
    error_type = "permission_error"
    retry_helps = False


class NotFoundError(RouterError):
    status_code = 404
    error_type = "not_found_error"
    retry_helps = False


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RequestNotFoundError(NotFoundError):
    code = "request_not_found"
    retry_helps = True  # another replica may not have written the answer's record yet


class ConflictError(RouterError):
    status_code = 409
    error_type = "invalid_request_error"
    retry_helps = False


class FeedbackExistsError(ConflictError):
    code = "feedback_exists"


class PayloadTooLargeError(RouterError):
    status_code = 413
    error_type = "invalid_request_error"
    retry_helps = False
    code = "payload_too_large"


class RateLimitError(RouterError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExhaustedError(RateLimitError):
    error_type = "insufficient_quota"
    code = "budget_exhausted"
    retry_helps = False  # daily budgets reset at midnight, not within a client's retries


class NoHealthyBackendError(RouterError):
    status_code = 503
    error_type = "service_unavailable"
    code = "no_healthy_backend"


class UpstreamError(RouterError):
    status_code = 502
    error_type = "upstream_error"
    retryable = True


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamRateLimitedError(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamUnavailableError(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamNotFoundError(UpstreamError):
    code = "upstream_model_not_found"
    retry_helps = False


class UpstreamAuthError(UpstreamError):
    code = "upstream_authentication_failed"
    retryable = False
    retry_helps = False


class UpstreamBadRequestError(UpstreamError):
    status_code = 400
    error_type = "invalid_request_error"
    retryable = False
    retry_helps = False


class ContentFilterError(UpstreamBadRequestError):
    code = "content_filter"


def error_body(exc: BaseException) -> dict[str, Any]:
    """OpenAI's error body for any exception; unknown exceptions never show their text."""
    if isinstance(exc, RouterError):
        return {
            "error": {
                "message": exc.message,
                "type": exc.error_type,
                "param": exc.param,
                "code": exc.code,
            }
        }
    return {
        "error": {
            "message": "The router hit an internal error; the request id is in the x-request-id header.",
            "type": "api_error",
            "param": None,
            "code": "internal_error",
        }
    }


def status_of(exc: BaseException) -> int:
    return exc.status_code if isinstance(exc, RouterError) else 500


def error_headers(exc: BaseException) -> dict[str, str]:
    """The headers an error answer carries: ``retry-after`` when the error knows when to come
    back, and ``x-should-retry: false`` when retrying the same request cannot help."""
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        headers["retry-after"] = str(max(1, round(retry_after)))
    if isinstance(exc, RouterError) and not exc.retry_helps:
        headers["x-should-retry"] = "false"
    return headers
