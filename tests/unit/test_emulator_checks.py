"""The emulators check signatures and password schemes with their own code: a request built
here by hand from each vendor's documented algorithm is accepted, and the same request
built with a plausible mistake (wrong canonical string, wrong key, a hashing step left
out) is refused. Nothing here comes from ``rps_service.providers``, so a signing bug in a
provider cannot be mirrored by the emulator it is tested against.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import time
import xmlrpc.client
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

import rps_service.sandbox
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.fanvil import DEMO_PASSWORD, DEMO_USER
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import DEMO_KEY_ID, DEMO_SECRET, SandboxState

# -- the documented algorithms, written out -----------------------------------------------


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hawk_header(key_id: str, secret: str, method: str, url: str, *, ts: int, nonce: str,
                body: bytes = b"", content_type: str = "",
                tamper: str = "") -> str:
    """Hawk 1.0 (sha256) ``Authorization``: the MAC is base64(HMAC-SHA256) of
    ``hawk.1.header`` and ts, nonce, METHOD, path+query, host, port, payload hash, ext, each
    followed by a newline; the payload hash is base64(SHA-256) of ``hawk.1.payload``, the
    bare content type and the body, each followed by a newline.

    ``tamper`` names a mistake to make: ``path`` signs another path, ``no-newline`` leaves
    the final newline out.
    """
    parts = urlsplit(url)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    payload_hash = ""
    if body:
        bare = content_type.split(";")[0].strip().lower()
        digest = hashlib.sha256(b"hawk.1.payload\n" + bare.encode() + b"\n" + body + b"\n")
        payload_hash = base64.b64encode(digest.digest()).decode()
    if tamper == "path":
        resource += "x"
    normalized = "".join(f"{line}\n" for line in (
        "hawk.1.header", ts, nonce, method.upper(), resource, (parts.hostname or "").lower(),
        port, payload_hash, ""))
    if tamper == "no-newline":
        normalized = normalized[:-1]
    mac = base64.b64encode(hmac.new(secret.encode(), normalized.encode(),
                                    hashlib.sha256).digest()).decode()
    hashed = f', hash="{payload_hash}"' if payload_hash else ""
    return f'Hawk id="{key_id}", ts="{ts}", nonce="{nonce}"{hashed}, mac="{mac}"'


def gdms_signature(query: list[tuple[str, str]], client_id: str, client_secret: str,
                   body: bytes = b"") -> str:
    """GDMS: hex SHA-256 of ``&`` + sorted ``k=v`` (query plus client id and secret)
    joined with ``&`` + ``&``, then the body's hex SHA-256 and ``&`` when there is one."""
    pairs = sorted([*query, ("client_id", client_id), ("client_secret", client_secret)])
    text = "&" + "&".join(f"{k}={v}" for k, v in pairs) + "&"
    if body:
        text += sha256_hex(body) + "&"
    return sha256_hex(text.encode())


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState())
    yield running
    await running.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as sent:
        yield sent


# -- SRAPS: Hawk --------------------------------------------------------------------------


def nonce() -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(str(time.time_ns()).encode()).digest()[:6]
                                    ).decode()


async def test_sraps_accepts_a_hawk_header_built_from_the_spec(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    url = f"{sandbox.url}tokens/{DEMO_KEY_ID}"
    header = hawk_header(DEMO_KEY_ID, DEMO_SECRET, "GET", url, ts=int(time.time()),
                         nonce=nonce())
    answer = await client.get(url, headers={"Authorization": header})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == DEMO_KEY_ID


async def test_sraps_accepts_a_hawk_payload_hash_built_from_the_spec(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    url = f"{sandbox.url}companies/1001/endpoints/000413ABCDEF"
    body = json.dumps({"mac": "000413ABCDEF", "autoprovisioning_enabled": True,
                       "setting_server": "https://pbx.test/ztprov/1/"}).encode()
    header = hawk_header(DEMO_KEY_ID, DEMO_SECRET, "PUT", url, ts=int(time.time()),
                         nonce=nonce(), body=body, content_type="application/json")
    answer = await client.put(url, content=body, headers={
        "Authorization": header, "Content-Type": "application/json"})
    # Whatever the endpoint thinks of the body, the signature passed: no 401.
    assert answer.status_code != 401, answer.text


@pytest.mark.parametrize(("mistake", "error"), [
    ("path", "Bad mac"), ("no-newline", "Bad mac"), ("wrong-key", "Bad mac"),
])
async def test_sraps_refuses_a_wrongly_signed_request(
    sandbox: RunningSandbox, client: httpx.AsyncClient, mistake: str, error: str
) -> None:
    url = f"{sandbox.url}tokens/{DEMO_KEY_ID}"
    secret = DEMO_SECRET + "x" if mistake == "wrong-key" else DEMO_SECRET
    header = hawk_header(DEMO_KEY_ID, secret, "GET", url, ts=int(time.time()), nonce=nonce(),
                         tamper=mistake)
    answer = await client.get(url, headers={"Authorization": header})
    assert answer.status_code == 401
    assert f'error="{error}"' in answer.headers["WWW-Authenticate"]


async def test_sraps_refuses_a_body_signed_without_its_payload_hash(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    url = f"{sandbox.url}companies/1001/endpoints/000413ABCDEF"
    body = b'{"mac": "000413ABCDEF"}'
    header = hawk_header(DEMO_KEY_ID, DEMO_SECRET, "PUT", url, ts=int(time.time()),
                         nonce=nonce())  # signed as if there were no body
    answer = await client.put(url, content=body, headers={
        "Authorization": header, "Content-Type": "application/json"})
    assert answer.status_code == 401
    assert 'error="Missing required payload hash"' in answer.headers["WWW-Authenticate"]


# -- GDMS: hashed password and query signature --------------------------------------------


async def gdms_token(sandbox: RunningSandbox, client: httpx.AsyncClient,
                     password: str) -> httpx.Response:
    login = sandbox.state.emulators["grandstream"].demo_credentials()
    form = {"grant_type": "password", "username": str(login["username"]),
            "password": password, "client_id": str(login["client_id"]),
            "client_secret": str(login["client_secret"])}
    return await client.post(f"{sandbox.base_url}/grandstream/oapi/oauth/token", data=form)


async def test_gdms_token_takes_sha256_of_the_md5_hex_only(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    password = str(sandbox.state.emulators["grandstream"].demo_credentials()["password"])
    right = await gdms_token(sandbox, client, sha256_hex(md5_hex(password).encode()))
    assert right.status_code == 200 and right.json()["access_token"]
    for wrong in (password, md5_hex(password), sha256_hex(password.encode())):
        refused = await gdms_token(sandbox, client, wrong)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"


async def gdms_call(sandbox: RunningSandbox, client: httpx.AsyncClient, mistake: str = ""
                    ) -> dict[str, object]:
    login = sandbox.state.emulators["grandstream"].demo_credentials()
    client_id, secret = str(login["client_id"]), str(login["client_secret"])
    password = sha256_hex(md5_hex(str(login["password"])).encode())
    token = (await gdms_token(sandbox, client, password)).json()["access_token"]
    body = json.dumps({"pageNum": 1, "pageSize": 10}).encode()
    query = [("access_token", token), ("timestamp", str(int(time.time() * 1000)))]
    signed_body = b"" if mistake == "no-body-hash" else body
    signed_secret = secret + "x" if mistake == "wrong-secret" else secret
    signed_query = (list(reversed(query)) if mistake == "unsorted" else query)
    if mistake == "unsorted":  # the pairs joined in the order sent, not sorted by name
        pairs = [*signed_query, ("client_id", client_id), ("client_secret", secret)]
        text = "&" + "&".join(f"{k}={v}" for k, v in pairs) + "&" + sha256_hex(body) + "&"
        sig = sha256_hex(text.encode())
    else:
        sig = gdms_signature(query, client_id, signed_secret, signed_body)
    url = (f"{sandbox.base_url}/grandstream/oapi/v1.0.0/device/list?"
           + urlencode([*query, ("signature", sig)]))
    answer = await client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


async def test_gdms_accepts_a_signature_built_from_the_documented_algorithm(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    answer = await gdms_call(sandbox, client)
    assert answer["retCode"] == 0


@pytest.mark.parametrize("mistake", ["no-body-hash", "wrong-secret", "unsorted"])
async def test_gdms_refuses_a_wrong_signature(
    sandbox: RunningSandbox, client: httpx.AsyncClient, mistake: str
) -> None:
    answer = await gdms_call(sandbox, client, mistake)
    assert answer["retCode"] == 40002
    assert answer["msg"] == "Signature error"


# -- FDPS: double-MD5 Basic password ------------------------------------------------------


async def fdps_list(sandbox: RunningSandbox, client: httpx.AsyncClient,
                    password: str) -> httpx.Response:
    body = xmlrpc.client.dumps((), "redirect.listDevices", encoding="utf-8").encode()
    return await client.post(f"{sandbox.base_url}/fanvil/xmlrpc.php", content=body,
                             auth=(DEMO_USER, password), headers={"Content-Type": "text/xml"})


async def test_fdps_accepts_the_double_md5_password(
    sandbox: RunningSandbox, client: httpx.AsyncClient
) -> None:
    answer = await fdps_list(sandbox, client, md5_hex(md5_hex(DEMO_PASSWORD)))
    assert answer.status_code == 200
    (result,), _ = xmlrpc.client.loads(answer.content)
    assert result[0] is True


@pytest.mark.parametrize("password", [
    DEMO_PASSWORD, md5_hex(DEMO_PASSWORD), md5_hex(md5_hex(DEMO_PASSWORD)).upper(),
    md5_hex(md5_hex(DEMO_PASSWORD + "x")),
])
async def test_fdps_refuses_any_other_password_form(
    sandbox: RunningSandbox, client: httpx.AsyncClient, password: str
) -> None:
    answer = await fdps_list(sandbox, client, password)
    assert answer.status_code == 401


# -- independence -------------------------------------------------------------------------


def imported_modules(source: str, package: str = "rps_service.sandbox") -> set[str]:
    """Every module a module of ``package`` imports, relative imports made absolute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_import_scan_resolves_relative_imports() -> None:
    assert "rps_service.providers.fanvil" in imported_modules(
        "from ..providers.fanvil import SCHEMES\n")
    assert "rps_service.providers.hawk" in imported_modules(
        "def f() -> None:\n    from rps_service.providers import hawk\n")


def test_no_emulator_imports_the_providers() -> None:
    folder = Path(rps_service.sandbox.__file__).parent
    offending = {path.name: sorted(m for m in imported_modules(path.read_text())
                                   if m.startswith("rps_service.providers"))
                 for path in sorted(folder.glob("*.py"))}
    assert {name: found for name, found in offending.items() if found} == {}
