"""One definition of what local mode allows (API.md §6, §9): http:// only to a loopback host
(127.0.0.0/8, ::1, `localhost` names), judged alike for the site URL, every URL in a manifest,
OAuth URLs and the guarded client. The expected verdicts are written out here, not derived from
the code, so any of the checks drifting from the others (or from the contract) fails."""

from __future__ import annotations

import pytest

from conduit.vault import sites as vault
from conduit.platform.errors import ConduitError
from conduit.vault.manifests import parse_manifest
from conduit.net.outbound import GuardedClient, OutboundError, is_loopback_host
from conduit.vault.site_oauth import check_redirect_uri

LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.45.6.7", "127.255.255.254", "127.1", "[::1]", "[::ffff:127.0.0.2]", "localhost", "api.localhost"]
NOT_LOOPBACK = ["10.0.0.1", "192.168.1.1", "126.255.255.255", "128.0.0.1", "0.0.0.0", "[::2]", "169.254.169.254", "93.184.216.34"]
NAMES = {"loopback.example": ["127.0.0.1"], "site.example": ["93.184.216.34"]}  # names are never loopback by name
PUBLIC = {"93.184.216.34", "126.255.255.255", "128.0.0.1"}  # just outside 127.0.0.0/8: public


def resolver(host: str, port: int) -> list[str]:
    return NAMES[host]


def allowed(check) -> bool:
    try:
        check()
    except (OutboundError, ConduitError):
        return False
    return True


def manifest_allows(url: str, client: GuardedClient) -> dict[str, bool]:
    """Each URL slot of a manifest, judged by parse_manifest."""
    slots = {
        "server.url": {"server": {"url": url}},
        "usage.tools_endpoint": {"server": {"url": "https://site.example"}, "usage": {"tools_endpoint": url + "/tools/{tool_name}"}},
        "auth.authorization_url": {
            "server": {"url": "https://site.example"},
            "auth": {"type": "oauth2", "authorization_url": url + "/authorize", "token_url": "https://site.example/token"},
        },
        "auth.token_url": {
            "server": {"url": "https://site.example"},
            "auth": {"type": "oauth2", "authorization_url": "https://site.example/authorize", "token_url": url + "/token"},
        },
    }
    tool = {"name": "t", "description": "d", "input_schema": {"type": "object"}}
    verdicts = {}
    for field, extra in slots.items():
        verdicts[field] = allowed(lambda: parse_manifest({"name": "S", "version": "1", "tools": [tool], **extra}, client))
    return verdicts


def verdicts(url: str, local_mode: bool) -> dict[str, bool]:
    client = GuardedClient(allow_loopback=local_mode, resolver=resolver)
    return {
        "guarded client": allowed(lambda: client.check_url(url)),
        "site url": allowed(lambda: vault.check_site_url(url, client)),
        "oauth redirectUri": allowed(lambda: check_redirect_uri(url + "/cb", client)),
        **manifest_allows(url, client),
    }


@pytest.mark.parametrize("local_mode", [True, False])
@pytest.mark.parametrize("host", LOOPBACK + NOT_LOOPBACK + sorted(NAMES))
def test_every_check_agrees_on_http(host, local_mode):
    expected = local_mode and host in LOOPBACK
    assert verdicts(f"http://{host}:8080", local_mode) == dict.fromkeys(verdicts(f"http://{host}:8080", local_mode), expected)


@pytest.mark.parametrize("local_mode", [True, False])
@pytest.mark.parametrize("host", LOOPBACK + NOT_LOOPBACK)
def test_every_check_agrees_on_https_without_dns(host, local_mode):
    expected = host in PUBLIC or (local_mode and host in LOOPBACK)
    result = verdicts(f"https://{host}", local_mode)
    assert result == dict.fromkeys(result, expected)


@pytest.mark.parametrize("host", LOOPBACK + NOT_LOOPBACK + sorted(NAMES))
def test_the_definition_itself(host):
    assert is_loopback_host(host) is (host in LOOPBACK)


@pytest.mark.parametrize(
    ("local_mode", "message"),
    [
        (True, "Only absolute https:// URLs, or http:// on loopback (127.0.0.0/8, ::1 or localhost), are allowed"),
        (False, "Only https:// URLs are allowed"),
    ],
)
@pytest.mark.parametrize("url", ["not a url", "ftp://site.example/x", "http://site.example/", "javascript:alert(1)"])
def test_invalid_url_says_what_the_mode_accepts(url, local_mode, message):
    with pytest.raises(ConduitError) as raised:
        vault.check_site_url(url, GuardedClient(allow_loopback=local_mode, resolver=resolver))
    assert (raised.value.code, raised.value.message) == ("INVALID_URL", message)
