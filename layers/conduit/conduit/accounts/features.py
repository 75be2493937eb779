"""Tier features: what a tier includes, and the code that says it does not.

The counted limits (how many agents, sites, members, keys) are counters changed in the same
transaction as what they count: conduit.repositories.counters.
"""

from __future__ import annotations

from conduit.platform.errors import ConduitError
from conduit.platform.tiers import Tier, get_tiers

# Feature → the code for "your tier lacks it"; a workspace needs the Team plan (API.md §10).
FEATURE_CODES = {"workspaces": "WORKSPACE_REQUIRED"}


def require_feature(tier: Tier, feature: str) -> None:
    """TIER_REQUIRED (WORKSPACE_REQUIRED for workspaces) unless the tier includes `feature`."""
    if not tier.allows(feature):
        code = FEATURE_CODES.get(feature, "TIER_REQUIRED")
        if code != "TIER_REQUIRED":
            raise ConduitError(code)
        tiers = get_tiers().tiers
        having = [name for name, candidate in tiers.items() if candidate.allows(feature)]
        raise ConduitError(
            code,
            f"The {feature} feature is not in the {tier_name(tier, tiers)} tier; it is in: {', '.join(having) or 'no tier'}",
        )


def tier_name(tier: Tier, tiers: dict[str, Tier]) -> str:
    return next((name for name, candidate in tiers.items() if candidate == tier), "current")
