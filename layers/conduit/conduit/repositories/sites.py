"""Vault sites (TABLE.md rows: site, site domain claim).

A site and its domain claim are written together with the account's `sites`
counter, so "one site per domain" (TOKEN_EXISTS) and the tier's site limit
(VAULT_LIMIT_REACHED) both hold exactly under concurrent creates.
"""

from __future__ import annotations

from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.counters import create_counted, delete_counted
from conduit.repositories.accounts import account_pk
from conduit.repositories.base import ConditionsFailed, Page, Repository, from_item, to_item

SITE_PREFIX = "SITE#"


def prefetch_site(path_parameters: dict[str, str], account_id: str) -> list[tuple[str, str]]:
    """The `/vault/sites/{siteId}` routes' site of the caller's own account, read by the gate (conduit.identity.gate.prefetch)."""
    return [(account_pk(account_id), f"{SITE_PREFIX}{path_parameters['siteId']}")]


def _site_key(account_id: str, site_id: str) -> dict[str, Any]:
    return to_item({"PK": account_pk(account_id), "SK": f"{SITE_PREFIX}{site_id}"})


def _claim_key(account_id: str, domain: str) -> dict[str, Any]:
    return to_item({"PK": account_pk(account_id), "SK": f"SITEDOMAIN#{domain}"})


class SitesRepository(Repository):
    def create(self, site: dict[str, Any], max_sites: int | None) -> None:
        """Store a new site, claiming its domain in the account and counting it against the tier."""
        account_id, domain = site["accountId"], site["domain"]
        claim = {**from_item(_claim_key(account_id, domain)), "siteId": site["siteId"]}
        item = {**from_item(_site_key(account_id, site["siteId"])), **site}
        condition = {"ConditionExpression": "attribute_not_exists(PK)"}
        try:
            create_counted(
                self.client,
                self.table_name,
                account_id,
                "sites",
                max_sites,
                [
                    {"Put": {"TableName": self.table_name, "Item": to_item(claim), **condition}},
                    {"Put": {"TableName": self.table_name, "Item": to_item(item), **condition}},
                ],
                code="VAULT_LIMIT_REACHED",
            )
        except ConditionsFailed:
            raise ConduitError("TOKEN_EXISTS", f"The vault already has a site for {domain}") from None

    def get_site(self, account_id: str, site_id: str) -> dict[str, Any]:
        item = self.get(account_pk(account_id), f"{SITE_PREFIX}{site_id}")
        if item is None:
            raise ConduitError("NOT_FOUND", "No site found with the provided ID")
        return item

    def list_sites(self, account_id: str, limit: int, cursor: str | None) -> Page:
        return self.query_page(account_pk(account_id), sk_prefix=SITE_PREFIX, limit=limit, cursor=cursor)

    def all_sites(self, account_id: str) -> list[dict[str, Any]]:
        """Every site of the account (bounded by the tier's site limit), for assembling tools."""
        return self.query_all(account_pk(account_id), sk_prefix=SITE_PREFIX)

    def update(self, account_id: str, site_id: str, values: dict[str, Any], remove: tuple[str, ...] = ()) -> dict[str, Any]:
        """Set (and remove) attributes of an existing site; NOT_FOUND if it is gone."""
        key = {"PK": account_pk(account_id), "SK": f"{SITE_PREFIX}{site_id}"}
        return self.update_existing(key, values, remove, ConduitError("NOT_FOUND", "No site found with the provided ID"))

    def delete(self, account_id: str, site_id: str) -> None:
        site = self.get_site(account_id, site_id)
        exists = {"ConditionExpression": "attribute_exists(PK)"}
        try:
            delete_counted(
                self.client,
                self.table_name,
                account_id,
                "sites",
                [
                    {"Delete": {"TableName": self.table_name, "Key": _site_key(account_id, site_id), **exists}},
                    {"Delete": {"TableName": self.table_name, "Key": _claim_key(account_id, site["domain"]), **exists}},
                ],
            )
        except ConditionsFailed:  # deleted by a concurrent request
            raise ConduitError("NOT_FOUND", "No site found with the provided ID") from None

    # --- OAuth: pending authorizations and the refresh lock ---------------------------
    def put_pending_authorization(self, state: str, values: dict[str, Any]) -> None:
        item = {"PK": f"OAUTHSTATE#{state}", "SK": "OAUTHSTATE", **values}
        self.client.put_item(TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def take_pending_authorization(self, state: str, account_id: str, now_epoch: int) -> dict[str, Any] | None:
        """Consume a pending authorization once: it must exist, belong to the account and be unexpired."""
        try:
            response = self.client.delete_item(
                TableName=self.table_name,
                Key=to_item({"PK": f"OAUTHSTATE#{state}", "SK": "OAUTHSTATE"}),
                ConditionExpression="accountId = :account AND expiresAt > :now",
                ExpressionAttributeValues=to_item({":account": account_id, ":now": now_epoch}),
                ReturnValues="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return from_item(response["Attributes"])

    def lock_token_refresh(self, account_id: str, site_id: str, now_epoch: int, lease_seconds: int) -> dict[str, Any] | None:
        """Take the site's refresh lock (a lease, so a crashed holder cannot block it for long).
        Returns the site as it is now, or None while another refresh holds the lock."""
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=_site_key(account_id, site_id),
                UpdateExpression="SET refreshLockUntil = :until",
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(refreshLockUntil) OR refreshLockUntil < :now)",
                ExpressionAttributeValues=to_item({":until": now_epoch + lease_seconds, ":now": now_epoch}),
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return from_item(response["Attributes"])

    def release_token_refresh(self, account_id: str, site_id: str, values: dict[str, Any] | None = None) -> None:
        """Release the refresh lock, storing `values` (the new tokens, or the expired status) in the same write."""
        self.update(account_id, site_id, values or {}, remove=("refreshLockUntil",))
