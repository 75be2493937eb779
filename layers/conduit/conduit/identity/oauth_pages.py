"""The pages of `/oauth/authorize`: server-rendered HTML, no script, no build step.

Every value is escaped; the forms post back to the same URL with the authorization request in
hidden fields, the CSRF token (matching the browser's cookie) and, once signed in, the ticket.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#f4f5f7;color:#1d2330}main{max-width:440px;margin:48px auto;padding:32px;background:#fff;
border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:1.3rem;margin:0 0 4px}p.sub{margin:0 0 20px;color:#5b6474}.client{font-weight:600}
ul.scopes{padding:0;margin:0 0 20px;list-style:none}ul.scopes li{padding:10px 12px;border:1px solid #e3e6eb;
border-radius:8px;margin-bottom:8px}ul.scopes code{font-size:.85rem;color:#5b6474}
label{display:block;font-weight:600;margin:14px 0 6px}input[type=email],input[type=password],select{width:100%;
padding:10px 12px;font:inherit;border:1px solid #c9ced6;border-radius:8px}
.actions{display:flex;gap:12px;margin-top:24px}button{flex:1;padding:11px;font:inherit;font-weight:600;
border-radius:8px;border:1px solid #c9ced6;background:#fff;cursor:pointer}button.primary{background:#2453d6;
border-color:#2453d6;color:#fff}.error{background:#fdecec;color:#8a1c1c;padding:10px 12px;border-radius:8px;
margin-bottom:16px}.note{font-size:.85rem;color:#5b6474;margin-top:20px}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · Conduit</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _hidden(fields: dict[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in fields.items())


def _scopes(scopes: list[tuple[str, str]]) -> str:
    items = "".join(f"<li>{escape(text)}<br><code>{escape(name)}</code></li>" for name, text in scopes)
    return f'<ul class="scopes">{items}</ul>'


def _client(name: str, host: str) -> str:
    shown = f'<span class="client">{escape(name)}</span>'
    return f"{shown} ({escape(host)})" if host and host != name else shown


def sign_in(*, client_name: str, client_host: str, scopes: list[tuple[str, str]], fields: dict[str, str], email: str = "", error: str | None = None) -> str:
    message = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    return _page(
        "Sign in",
        f"<h1>Sign in to Conduit</h1><p class=\"sub\">{_client(client_name, client_host)} wants to use your Conduit vault.</p>"
        f"{message}{_scopes(scopes)}"
        f'<form method="post" action="/oauth/authorize">{_hidden(fields)}'
        f'<label for="email">Email</label><input id="email" type="email" name="email" value="{escape(email)}" autocomplete="username" required>'
        '<label for="password">Password</label><input id="password" type="password" name="password" autocomplete="current-password" required>'
        '<div class="actions"><button type="submit" name="action" value="deny" formnovalidate>Deny</button>'
        '<button class="primary" type="submit" name="action" value="sign_in">Continue</button></div></form>',
    )


def consent(*, client_name: str, client_host: str, email: str, scopes: list[tuple[str, str]], accounts: list[dict[str, Any]], fields: dict[str, str], error: str | None = None) -> str:
    message = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    options = "".join(f'<option value="{escape(a["id"])}">{escape(a["label"])}</option>' for a in accounts)
    return _page(
        "Allow access",
        f"<h1>Allow {_client(client_name, client_host)}?</h1>"
        f"<p class=\"sub\">Signed in as {escape(email)}. It will be able to:</p>{message}{_scopes(scopes)}"
        f'<form method="post" action="/oauth/authorize">{_hidden(fields)}'
        f'<label for="account">Account</label><select id="account" name="account">{options}</select>'
        '<div class="actions"><button type="submit" name="action" value="deny">Deny</button>'
        '<button class="primary" type="submit" name="action" value="approve">Allow</button></div></form>'
        '<p class="note">You can revoke this access at any time; the client then has to ask again.</p>',
    )


def problem(title: str, detail: str) -> str:
    """A request that cannot be sent back to its client (unknown client, unregistered redirect URI)."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(detail)}</p><p class=\"note\">Nothing was shared. You can close this page.</p>")
