"""The admin API's guard: `Authorization: Bearer <AUTOROUTE_MASTER_KEY>`.

No master key configured -> 403 (the admin API is off until one is set); a missing or
wrong token -> 401. The comparison is constant-time; the key is never logged or echoed.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from proxy.errors import AuthenticationFailed, PermissionDenied


def require_admin(request: Request) -> None:
    """Raise unless the request carries the master key; call first in every admin handler."""
    master = request.app.state.autoroute.settings.master_key
    secret = master.get_secret_value() if master is not None else ""
    if not secret:
        raise PermissionDenied(
            "The admin API is disabled: set AUTOROUTE_MASTER_KEY and send it as `Authorization: Bearer <key>`.",
            code="admin_disabled",
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "The admin API needs `Authorization: Bearer <AUTOROUTE_MASTER_KEY>`.",
            code="missing_admin_key", headers={"www-authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise AuthenticationFailed(
            "Invalid admin key: send the value of AUTOROUTE_MASTER_KEY.",
            code="invalid_admin_key", headers={"www-authenticate": "Bearer"},
        )
