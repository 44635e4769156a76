"""Webhook delivery: consumer groups per subscription, filters, signed pushes, retries, dead letters.

See :mod:`meshruntime.delivery.manager` for the engine and docs/delivery.md for what a receiver
sees (headers, signature, retries) and how to verify a delivery.
"""

from __future__ import annotations

from .manager import DeliveryManager
from .retry import Verdict, backoff_seconds, classify_status, parse_retry_after, retry_wait_seconds
from .signing import SIGNATURE_HEADER, SignatureError, sign, signature_header, verify
from .spec import SubscriptionSpec, specs_from_config
from .worker import DeliverySettings

__all__ = [
    "SIGNATURE_HEADER", "DeliveryManager", "DeliverySettings", "SignatureError", "SubscriptionSpec", "Verdict",
    "backoff_seconds", "classify_status", "parse_retry_after", "retry_wait_seconds", "sign",
    "signature_header", "specs_from_config", "verify",
]
