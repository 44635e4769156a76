"""What of a MeshConfig document leaves the server, and to whom.

A document holds every team's setup, every application's key digests and every subscription's
signing secret. Runtimes read it whole, from Redis. Through the portal and its API:

- the whole document (a version's ``document.json`` and ``/api/v1/config-versions/{id}/document/``)
  is for staff only, who manage the mesh as a whole; other users see the versions, their
  summaries and their diffs;
- key digests and signing secrets are replaced by ``(redacted)`` for everyone, staff included:
  only runtimes verify keys and sign deliveries. A digest is an unsalted SHA-256 of the key, so
  whoever holds it can check guesses offline; nobody but a runtime has a use for it;
- diffs name keys by prefix only; diffs recorded before that rule are redacted when shown.
"""

from __future__ import annotations

from typing import Any

REDACTED = "(redacted)"
#: Why a user who is not staff gets 403 for a whole document (the page and the API say the same).
DOCUMENTS_FOR_STAFF = ("Only staff read whole config documents: they describe every team's setup. "
                       "The version's summary and diff are open to everyone signed in.")
#: Fields that never leave the server, wherever they appear in a document or a diff.
HIDDEN_FIELDS = frozenset({"sha256", "secret"})


def may_read_documents(user) -> bool:
    """Whole documents: staff only."""
    return bool(user and user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def redact(value: Any) -> Any:
    """``value`` (a document, a diff, a part of either) with every hidden field's value replaced.

    A diff's ``{"secret": True}`` (a secret that changed, without its values) stays as it is."""
    if isinstance(value, dict):
        return {key: (REDACTED if key in HIDDEN_FIELDS and not isinstance(item, bool) else redact(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def without_digests(keys: Any) -> Any:
    """A document's ``keys`` list without the digests, for a diff that shows a key's expiry change."""
    if not isinstance(keys, list):
        return keys
    return [{k: v for k, v in key.items() if k != "sha256"} if isinstance(key, dict) else key for key in keys]
