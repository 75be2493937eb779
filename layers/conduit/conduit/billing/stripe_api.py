"""The one way Conduit talks to Stripe: its keys, its client, and its errors as ConduitErrors.

Imported only by the billing and Stripe webhook functions, and `stripe` itself (with
requests and httpx, 30-100 ms of import) only when a call or a webhook needs it: most
billing routes (`GET /billing`, the ledger, settings) never talk to Stripe.

- Keys: STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET when set (local runs and tests);
  otherwise, outside local mode, the Secrets Manager secrets STRIPE_SECRET_KEY_ID /
  STRIPE_WEBHOOK_SECRET_ID, fetched through Powertools Parameters and cached for five
  minutes, as the JWT key is. Local mode never reads those: the local emulator fills
  every template secret with random bytes, which are not Stripe keys.
- Client: one `StripeClient` per key, at STRIPE_API_BASE when set (tests point it at a
  loopback server). Every POST carries the idempotency key its caller derives.
- Errors: a declined card → PAYMENT_FAILED (402); Stripe unreachable, misconfigured or
  not configured → BILLING_UNAVAILABLE (503); a reused Idempotency-Key → VALIDATION_ERROR.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities import parameters
from pydantic import SecretStr

from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.observability import logger
from conduit.platform.settings import get_settings

if TYPE_CHECKING:
    import stripe

NETWORK_RETRIES = 2  # stripe-python retries with the same Idempotency-Key
AUTHENTICATION_REQUIRED_MESSAGE = (
    "Your bank asks you to confirm this payment, which cannot be done while you are away: "
    "come back and pay in session (add or confirm your card on the Billing page), then try again."
)


def _secret(value: SecretStr | None, secret_id: str) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if secret_id and not get_settings().local_mode:
        return parameters.get_secret(secret_id, max_age=300) or None
    return None


def api_key() -> str | None:
    settings = get_settings()
    return _secret(settings.stripe_secret_key, settings.stripe_secret_key_id)


def webhook_secret() -> str | None:
    settings = get_settings()
    return _secret(settings.stripe_webhook_secret, settings.stripe_webhook_secret_id)


def is_configured() -> bool:
    return api_key() is not None


def client() -> stripe.StripeClient:
    """The Stripe client; BILLING_UNAVAILABLE when this deployment has no Stripe API key."""
    key = api_key()
    if key is None:
        raise ConduitError(
            "BILLING_UNAVAILABLE",
            "Billing is not configured on this server (no Stripe API key): cards, purchases and plan changes are unavailable",
        )
    return _client_for(key, get_settings().stripe_api_base)


@lru_cache(maxsize=4)
def _client_for(key: str, api_base: str) -> stripe.StripeClient:
    import stripe

    return stripe.StripeClient(
        key, base_addresses={"api": api_base} if api_base else None, max_network_retries=NETWORK_RETRIES
    )


def payment_failed(error: stripe.CardError) -> ConduitError:
    """PAYMENT_FAILED for a declined card; one that needs the customer present says so."""
    if error.code == "authentication_required":
        return ConduitError("PAYMENT_FAILED", AUTHENTICATION_REQUIRED_MESSAGE)
    reason = error.user_message or error.code or "declined"
    return ConduitError("PAYMENT_FAILED", f"The payment was declined: {reason}")


@contextmanager
def calling_stripe(action: str) -> Iterator[None]:
    """Stripe's errors, raised inside, as the ConduitErrors a client can act on."""
    import stripe

    try:
        yield
    except stripe.CardError as error:
        raise payment_failed(error) from None
    except stripe.IdempotencyError:
        raise validation_error("Idempotency-Key", "was already used for a different request") from None
    except stripe.InvalidRequestError as error:
        if error.param == "payment_method" or (error.code or "").startswith("payment_method"):
            # The card on file is gone or unusable (removed in Stripe, expired, …).
            raise ConduitError("PAYMENT_FAILED", "The card on file cannot be charged: add a card again") from None
        raise  # a request Conduit should not have sent: a bug, logged as a 500
    except (stripe.AuthenticationError, stripe.PermissionError):
        logger.exception("Stripe refused the API key", extra={"action": action})
        raise ConduitError("BILLING_UNAVAILABLE", "Billing is misconfigured on this server (Stripe refused its key)") from None
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
        logger.warning("Stripe unavailable", extra={"action": action, "error": str(error)[:300]})
        raise ConduitError("BILLING_UNAVAILABLE", "Stripe could not be reached; try again in a moment") from None
