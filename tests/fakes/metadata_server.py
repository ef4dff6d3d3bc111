"""A fake GCE metadata server: what Application Default Credentials read on GKE (Workload Identity).

Point ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` at it and ``google.auth.default()`` finds
"compute engine" credentials whose token comes from here, exactly as on a GKE pod.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeServer

FLAVOR = {"Metadata-Flavor": "Google"}


class FakeMetadata(FakeServer):
    def __init__(self, project: str = "test-project", token: str = "fake-workload-identity-token") -> None:
        super().__init__(name="fake-metadata")
        self.project = project
        self.token = token

    def env(self) -> dict[str, str]:
        host = f"127.0.0.1:{self.port}"
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host, "NO_GCE_CHECK": "False"}

    @staticmethod
    def reload_google_auth() -> None:
        """google-auth reads GCE_METADATA_HOST once, when first imported: after pointing the
        environment at a fake, make it read the variable again (tests only)."""
        import importlib

        from google.auth.compute_engine import _metadata

        importlib.reload(_metadata)

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self.handle, methods=["GET"])]

    async def handle(self, request: Request) -> Response:
        await self.record(request)
        if request.headers.get("metadata-flavor") != "Google":
            return PlainTextResponse("Missing Metadata-Flavor header", status_code=403, headers=FLAVOR)
        path = request.url.path.rstrip("/")
        account = "/computeMetadata/v1/instance/service-accounts/default"
        if path in ("", "/computeMetadata/v1"):
            return PlainTextResponse("ok", headers=FLAVOR)
        if path == f"{account}/token":
            body = {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
            return JSONResponse(body, headers=FLAVOR)
        if path == account:
            body = {
                "aliases": ["default"],
                "email": "router@test-project.iam.gserviceaccount.com",
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
            return JSONResponse(body, headers=FLAVOR)
        if path == f"{account}/email":
            return PlainTextResponse("router@test-project.iam.gserviceaccount.com", headers=FLAVOR)
        if path == "/computeMetadata/v1/project/project-id":
            return PlainTextResponse(self.project, headers=FLAVOR)
        return PlainTextResponse("not found", status_code=404, headers=FLAVOR)
