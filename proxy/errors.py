"""One error tree. Each class knows its HTTP status, OpenAI error type and log level.

Every error a client can see is OpenAI-shaped:
    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
Messages say what to do next and never contain secrets or stack traces.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class ProxyError(Exception):
    status: int = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None
    log_level: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status  # an instance override, e.g. an upstream 4xx passed through

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def json(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"
    log_level = "info"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class RequestTimeout(InvalidRequest):
    status = 408
    default_code = "request_timeout"


class NotFound(InvalidRequest):
    status = 404
    default_code = "not_found"


class ModelNotFound(InvalidRequest):
    status = 404
    default_code = "model_not_found"


class NoCapableModel(InvalidRequest):
    """No model satisfies the request's hard constraints (context, tools, vision, cost, ...)."""

    status = 422
    default_code = "no_capable_model"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"
    log_level = "info"


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"
    default_code = "permission_denied"
    log_level = "info"


class RateLimited(ProxyError):
    status = 429
    type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"
    log_level = "info"


class BudgetExceeded(ProxyError):
    status = 429
    type = "budget_exceeded"
    default_code = "budget_exceeded"
    log_level = "info"


class ServiceUnavailable(ProxyError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"
    log_level = "warning"


class StoreUnavailable(ServiceUnavailable):
    default_code = "limits_store_unavailable"


class UpstreamFailed(ProxyError):
    """The upstream provider failed; carries each attempt's short cause (no keys, no bodies)."""

    status = 502
    type = "upstream_error"
    default_code = "upstream_error"
    log_level = "warning"

    def __init__(self, message: str, *, attempts: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.attempts = attempts or []

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.attempts:
            body["error"]["attempts"] = self.attempts
        return body


class UpstreamTimeout(UpstreamFailed):
    status = 504
    default_code = "upstream_timeout"


class UpstreamRejected(ProxyError):
    """The upstream answered 4xx (bad request, auth, not found): passed back with its meaning."""

    type = "invalid_request_error"
    default_code = "upstream_rejected"
    log_level = "info"


class PolicyError(Exception):
    """A policy file is broken. Raised at start-up; the message names file, line/field and problem."""
