"""`make seed` (`python -m shared.local.seed`): the local stack keeps its state in memory, so this
puts a demo user back into a running `make dev` in one command: registers (or logs in) the user,
accepts the terms, connects the demo site (`make demo-site`) and creates an agent that calls one of
its tools. Running it again changes nothing that is already there. It prints the access token.

    PORT (3000)  DEMO_SITE_PORT (8765)  SEED_EMAIL (demo@example.com)  SEED_PASSWORD (demo password)
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from shared.local.demo_site import DEFAULT_PORT, TOKEN

AGENT_NAME = "Demo order checker"


class SeedError(Exception):
    pass


def _request(api: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the local stack on loopback
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None
    except urllib.error.URLError as error:
        raise SeedError(f"nothing answers at {api} ({error.reason}): start it with `make dev`") from None


def _expect(result: tuple[int, Any], *statuses: int) -> Any:
    status, body = result
    if status not in statuses:
        detail = body.get("error") if isinstance(body, dict) else body
        raise SeedError(f"HTTP {status}: {detail}")
    return body


def seed(api: str, demo_origin: str, email: str, password: str) -> dict[str, Any]:
    """The user's tokens, site and agent (created, or found from an earlier seed)."""
    status, session = _request(api, "POST", "/auth/register", {"email": email, "password": password, "name": "Demo"})
    if status == 409:  # seeded before, stack still running
        session = _expect(_request(api, "POST", "/auth/login", {"email": email, "password": password}), 200)
    elif status != 201:
        _expect((status, session), 201)
    token = session["accessToken"]
    _expect(_request(api, "POST", "/auth/accept-terms", {}, token), 200)

    status, site = _request(api, "POST", "/vault/sites", {"url": demo_origin, "token": TOKEN}, token)
    if status == 409:  # TOKEN_EXISTS: this demo site is connected already
        sites = _expect(_request(api, "GET", "/vault/sites?limit=100", token=token), 200)["items"]
        site = next(item for item in sites if item["url"] == demo_origin)
        site = _expect(_request(api, "GET", f"/vault/sites/{site['id']}", token=token), 200)
    elif status == 404:
        raise SeedError(f"the demo site does not answer at {demo_origin}: start it with `make demo-site`")
    else:
        _expect((status, site), 201)
    get_order = next(tool["prefixedName"] for tool in site["tools"] if tool["name"] == "get_order")

    agents = _expect(_request(api, "GET", "/agents?limit=100", token=token), 200)["items"]
    agent = next((item for item in agents if item["name"] == AGENT_NAME), None)
    if agent is None:
        prompt = f'Check order 1.\ncall {get_order} {{"order_id": 1}}'
        agent = _expect(_request(api, "POST", "/agents", {"name": AGENT_NAME, "systemPrompt": prompt, "siteIds": [site["id"]]}, token), 201)
    return {"accessToken": token, "refreshToken": session["refreshToken"], "expiresIn": session["expiresIn"], "user": session["user"], "site": site, "agent": agent}


def main() -> int:
    api = f"http://127.0.0.1:{os.environ.get('PORT', '3000')}"
    demo_origin = f"http://127.0.0.1:{os.environ.get('DEMO_SITE_PORT', str(DEFAULT_PORT))}"
    email = os.environ.get("SEED_EMAIL", "demo@example.com")
    password = os.environ.get("SEED_PASSWORD", "demo password")
    try:
        seeded = seed(api, demo_origin, email, password)
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # The summary on stderr, the variables on stdout: `eval "$(make seed)"` sets them in a shell.
    print(f"Seeded {api}: user {email} (password {password!r}), site {seeded['site']['id']} ({demo_origin}), "
          f"agent {seeded['agent']['id']}. The access token expires in {seeded['expiresIn']} s; `make seed` again logs in anew.",
          file=sys.stderr)
    print(f"export API={api}")
    print(f"export T={seeded['accessToken']}")
    print(f"export AGENT={seeded['agent']['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
