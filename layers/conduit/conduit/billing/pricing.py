"""What a model turn costs in credits (API.md §15), in decimal arithmetic.

    cost = max(1, ceil(usd / creditValueUsd × markup)),
    usd  = input tokens × inputUsdPerMTok / 10⁶ + output tokens × outputUsdPerMTok / 10⁶

for a model listed in the tiers file's `pricing.models` (named `provider:model`,
as sessions and agents name it). A model not listed, or a file without
`pricing`, costs `costs.modelTurn` whatever it used.

The hold before a priced turn is the cost of its input estimate plus the
provider's `max_tokens` (each provider module's MAX_TOKENS): the most the turn
can cost, unless the estimate undershoots the provider's own count (the
settlement then charges what the balance still covers; see credits.py).
"""

from __future__ import annotations

import importlib
import json
from decimal import ROUND_CEILING, Decimal

from conduit.models import PROVIDER_MODULES, Message, ToolSpec, Usage
from conduit.platform.tiers import ModelPrice, get_tiers

MILLION = Decimal(1_000_000)
DEFAULT_MAX_TOKENS = 4096  # for a provider module that names no MAX_TOKENS
CHARACTERS_PER_TOKEN = 3  # English runs ~4 characters a token: 3 overestimates, as a hold should
TOKENS_PER_MESSAGE = 4  # the providers' per-message framing


def price_of(model: str) -> ModelPrice | None:
    """The model's price, or None when it is unpriced (it costs `costs.modelTurn`)."""
    pricing = get_tiers().pricing
    return pricing.models.get(model) if pricing is not None else None


def least_turn_cost(model: str) -> int:
    """The least a turn of `model` can cost: 1 priced, `costs.modelTurn` unpriced."""
    return 1 if price_of(model) is not None else get_tiers().costs.model_turn


def turn_cost(price: ModelPrice, usage: Usage) -> int:
    """Credits for a turn that used `usage` on a model at `price`."""
    pricing = get_tiers().pricing
    assert pricing is not None  # a price comes from the pricing block
    usd = (
        Decimal(max(0, usage.input_tokens)) * price.input_usd_per_m_tok
        + Decimal(max(0, usage.output_tokens)) * price.output_usd_per_m_tok
    ) / MILLION
    credits = (usd / pricing.credit_value_usd * pricing.markup).to_integral_value(rounding=ROUND_CEILING)
    return max(1, int(credits))


def max_output_tokens(model: str) -> int:
    """The `max_tokens` the model's provider asks for (its module's MAX_TOKENS)."""
    provider = model.partition(":")[0]
    module = PROVIDER_MODULES.get(provider)
    if module is None:
        return DEFAULT_MAX_TOKENS
    return int(getattr(importlib.import_module(module), "MAX_TOKENS", DEFAULT_MAX_TOKENS))


def input_estimate(messages: list[Message], tools: list[ToolSpec], system: str | None = None) -> int:
    """An overestimate of the input tokens (no tokenizer at cold start: characters / 3)."""
    characters = len(system or "") + sum(len(m.content) + sum(len(c.name) + len(json.dumps(c.arguments)) for c in m.tool_calls) for m in messages)
    characters += sum(len(t.name) + len(t.description) + len(json.dumps(t.input_schema)) for t in tools)
    return -(-characters // CHARACTERS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def hold_amount(
    model: str, price: ModelPrice, messages: list[Message], tools: list[ToolSpec], system: str | None = None
) -> int:
    """The most a turn can cost: its input estimate and its max_tokens, at its price."""
    return turn_cost(price, Usage(input_estimate(messages, tools, system), max_output_tokens(model)))
