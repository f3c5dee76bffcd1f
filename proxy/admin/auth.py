"""The admin API's guard, one for every /admin route: `Authorization: Bearer <AUTOROUTE_MASTER_KEY>`.

No master key configured -> 403 (the admin API is off until one is set); a missing or wrong
token -> 401. The check is KeyStore.require_master (constant-time, on hashes); the key is
never logged or echoed.
"""

from __future__ import annotations

from starlette.requests import Request

from proxy.keys.store import bearer_token


def require_admin(request: Request) -> None:
    """Raise unless the request carries the master key; call first in every admin handler."""
    request.app.state.autoroute.keys.require_master(bearer_token(request.headers))
