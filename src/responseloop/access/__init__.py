"""Who may call the server: an :class:`Authenticator` the ASGI app asks for every ``/v1``
request, and :class:`AccessPolicy`, the one built from API keys and an access file
(``responseloop serve --api-keys-file``, ``--access-file``).

Keys are held as SHA-256 digests (:func:`key_digest`) and compared in constant time, so
neither a file nor the process's memory needs a plaintext key.
"""

from __future__ import annotations

from ._file import AccessFileError, key_lines, policy_from_toml
from ._policy import AccessPolicy, Authenticator, Grant, KeyGroup, key_digest

__all__ = [
    "AccessFileError",
    "AccessPolicy",
    "Authenticator",
    "Grant",
    "KeyGroup",
    "key_digest",
    "key_lines",
    "policy_from_toml",
]
