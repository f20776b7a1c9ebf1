"""The SRAPS emulator: Snom's REST API v1 at ``/api/v1/`` (the handlers are in ``sraps_api.py``).

Hawk is checked by the handlers' wrapper (:meth:`SrapsEmulator.authenticated`); the world
(companies, keys, settings catalogue, endpoints) lives in
:class:`~rps_service.sandbox.state.SandboxState`. Other services of the SRAPS family
(:mod:`rps_service.sandbox.grape`) subclass the emulator with a world of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import sraps_api as api
from .emulator import Emulator, Held
from .hawk import HawkError, verify
from .state import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    SETTING_SERVER_UUID,
    TAKEN_MAC,
    ApiKey,
    SrapsWorld,
)

_MAC = "{mac:[0-9a-f]{12}}"  # strictly lower-case, no trailing slash: anything else is a 404
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authenticated(handler: Handler, world: SrapsWorld) -> Handler:
    """Hawk first (401 with the vendor's challenge), then the handler's own refusals."""

    async def checked(request: web.Request) -> web.StreamResponse:
        request[api.WORLD] = world
        try:
            request[api.API_KEY] = await _authenticate(world, request)
            return await handler(request)
        except HawkError as exc:
            return web.json_response({"detail": exc.error}, status=401,
                                     headers={"WWW-Authenticate": exc.www_authenticate}
                                     if exc.www_authenticate else {})
        except api.ApiError as exc:
            return exc.response()

    return checked


async def _authenticate(state: SrapsWorld, request: web.Request) -> ApiKey:
    # Hawk signs the URL as the client sent it: Host header plus raw path and query.
    url = f"http://{request.headers.get('Host', '')}{request.raw_path}"
    return verify(
        state,
        authorization=request.headers.get("Authorization"),
        url=url,
        method=request.method,
        body=await request.read(),
        content_type=request.headers.get("Content-Type", ""),
    )


class SrapsEmulator(Emulator):
    """Snom SRAPS REST v1."""

    name = "snom"
    prefix = "/api/v1"
    foreign_mac = TAKEN_MAC.upper()

    #: Prefix of the route names (SRAPS's are bare: ``token``, ``endpoint``...).
    route_prefix = ""

    @property
    def world(self) -> SrapsWorld:
        """The keys, companies and catalogue this service serves."""
        return self.state

    def authenticated(self, handler: Handler) -> Handler:
        """``handler`` behind this service's Hawk check."""
        return authenticated(handler, self.world)

    def add_routes(self, app: web.Application) -> None:
        router, path, name = app.router, self.world.api_path, self.route_prefix
        router.add_get(f"{path}/tokens/{{key_id}}", self.authenticated(api.get_token),
                       name=f"{name}token")
        router.add_get(f"{path}/companies/{{cid}}/", self.authenticated(api.get_company),
                       name=f"{name}company")
        router.add_get(f"{path}/settings/", self.authenticated(api.list_settings),
                       name=f"{name}settings")
        router.add_get(f"{path}/companies/{{cid}}/endpoints/",
                       self.authenticated(api.list_endpoints), name=f"{name}endpoints")
        endpoint = router.add_resource(f"{path}/companies/{{cid}}/endpoints/{_MAC}",
                                       name=f"{name}endpoint")
        endpoint.add_route("GET", self.authenticated(api.get_endpoint))
        endpoint.add_route("PUT", self.authenticated(api.put_endpoint))
        endpoint.add_route("DELETE", self.authenticated(api.delete_endpoint))

    def api_url(self, base: str) -> str:
        return f"{base}{self.world.api_path}/"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": "not-the-secret"}

    def sample_mac(self, index: int) -> str:
        return f"00041300{index:04X}"

    def holds(self, mac: str) -> Held | None:
        endpoint = self.state.endpoints(DEMO_COMPANY_ID).get(mac.lower())
        if endpoint is None:
            return None
        manager = endpoint["settings_manager"]

        def value(uuid: str) -> str | None:
            entry = manager.get(uuid)
            return entry.get("value") if isinstance(entry, dict) else None

        return Held(value(SETTING_SERVER_UUID), value(HTTP_CLIENT_USER_UUID),
                    value(HTTP_CLIENT_PASS_UUID), {"endpoint": endpoint})

    def account_of(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        start = header.find('id="')
        return header[start + 4 : header.find('"', start + 4)] if start >= 0 else "-"

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        """No route: 404 (405 for a wrong method) after authentication, like Django REST."""

        async def refuse(request: web.Request) -> web.StreamResponse:
            if isinstance(exc, web.HTTPMethodNotAllowed):
                raise api.ApiError(405, {"detail": f'Method "{request.method}" not allowed.'})
            raise api.ApiError(404, api.NOT_FOUND)

        return await self.authenticated(refuse)(request)

    def fault(self, status: int) -> web.Response:
        return api.fault_response(status)

    def throttled(self, retry_after: int) -> web.Response:
        return web.json_response({"detail": "Request was throttled."}, status=429,
                                 headers={"Retry-After": str(retry_after)})

    def snapshot(self) -> dict[str, Any]:
        return {}
