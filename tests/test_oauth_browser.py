"""The whole OAuth flow as an AI client and a person do it: the official MCP SDK's OAuth client
provider (discovery from the 401 challenge → protected resource metadata → authorization server
metadata → dynamic registration → authorization with PKCE and `resource` → token → call), with
the consent page driven in a real headless Chromium (Debian's chromium and chromedriver, Selenium).

The SDK's redirect handler hands the authorization URL to the browser; the person signs in,
picks the account and allows; the browser lands on the client's loopback callback, a real HTTP
server, which hands the code to the SDK. A screenshot of the consent page is saved for a look.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.test_docs_page import browser  # noqa: F401 - fixture
from tests.test_mcp import setup, site  # noqa: F401 - fixtures
from tests.test_oauth_server import PASSWORD

pytestmark = pytest.mark.stack
CONSENT_SCREENSHOT = Path(tempfile.gettempdir()) / "conduit-oauth-consent.png"


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Callback:
    """The client's redirect URI: a loopback HTTP server that keeps what the browser brought."""

    def __init__(self) -> None:
        received: dict[str, str] = {}
        self.received = received
        self.arrived = threading.Event()
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                received.update({name: values[0] for name, values in query.items()})
                body = b"<!doctype html><title>Done</title><p>You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                arrived.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def close(self) -> None:
        self.server.shutdown()


def person_allows(driver, url: str, email: str, *, account_label: str | None = None, decision: str = "approve", password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(url)
    wait.until(seen.presence_of_element_located((By.ID, "email"))).send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[value=sign_in]").click()
    if password != PASSWORD:  # the page comes back with the message
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
        return
    account = wait.until(seen.presence_of_element_located((By.ID, "account")))
    if account_label:
        Select(account).select_by_visible_text(account_label)
    if decision == "approve":
        driver.save_screenshot(str(CONSENT_SCREENSHOT))
    driver.find_element(By.CSS_SELECTOR, f"button[value={decision}]").click()


def test_the_sdks_oauth_provider_runs_the_whole_flow_through_the_consent_page(local_stack, browser, setup):  # noqa: F811
    callback = Callback()
    try:
        storage = MemoryStorage()

        async def redirect_handler(authorization_url: str) -> None:
            await asyncio.to_thread(person_allows, browser, authorization_url, setup["email"])

        async def callback_handler() -> AuthorizationCodeResult:
            assert await asyncio.to_thread(callback.arrived.wait, 30)
            return AuthorizationCodeResult(code=callback.received["code"], state=callback.received.get("state"))

        provider = OAuthClientProvider(
            server_url=f"{local_stack.url}/mcp",
            client_metadata=OAuthClientMetadata(
                client_name="SDK Test Client",
                redirect_uris=[callback.url],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                scope="tools:read tools:call",
            ),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )

        async def main():
            async with httpx2.AsyncClient(auth=provider, timeout=120) as http:
                async with Client(streamable_http_client(f"{local_stack.url}/mcp", http_client=http), mode="auto") as connected:
                    listed = await connected.list_tools()
                    called = await connected.call_tool(setup["tool"], {"q": "lamps"})
                    return listed, called

        listed, called = asyncio.run(main())
    finally:
        callback.close()
    assert setup["tool"] in [tool.name for tool in listed.tools]
    assert called.is_error is False and called.structured_content["received"] == {"q": "lamps"}
    assert storage.client_info is not None and storage.client_info.client_id.startswith("mcpc_")
    assert storage.tokens is not None and storage.tokens.refresh_token.startswith("cdr_")
    assert CONSENT_SCREENSHOT.exists()


def test_deny_and_a_wrong_password_in_the_browser(local_stack, browser, setup):  # noqa: F811
    import base64
    import hashlib
    import secrets
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    callback = Callback()
    try:
        registered = httpx2.post(f"{local_stack.url}/oauth/register", json={"client_name": "Denied", "redirect_uris": [callback.url]})
        client_id = registered.json()["client_id"]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(secrets.token_urlsafe(40).encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code", "client_id": client_id, "redirect_uri": callback.url, "state": "s",
                "code_challenge": challenge, "code_challenge_method": "S256", "resource": f"{local_stack.url}/mcp",
            }
        )
        url = f"{local_stack.url}/oauth/authorize?{query}"
        person_allows(browser, url, setup["email"], password="wrong password")
        assert "Invalid email or password" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
        person_allows(browser, url, setup["email"], decision="deny")
        assert callback.arrived.wait(30)
        assert (callback.received["error"], callback.received["state"], "code" in callback.received) == ("access_denied", "s", False)
    finally:
        callback.close()
