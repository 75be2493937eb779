"""Site tokens encrypted at rest with KMS.

Direct KMS Encrypt/Decrypt, not envelope encryption: a site token (access or
refresh) is far below KMS's 4 KiB plaintext limit, so a data key would add a
cache and a local AES step without protecting anything more, while direct
calls keep every decryption in CloudTrail under the key's policy. The
encryption context binds each ciphertext to its account, site and purpose: a
ciphertext copied to another site's item does not decrypt. Plaintexts are
decrypted only at call time and never logged or returned.
"""

from __future__ import annotations

import base64
from typing import Literal

from conduit.platform.aws import kms_client
from conduit.platform.settings import get_settings

Purpose = Literal["access", "refresh", "pkce-verifier"]


def _context(account_id: str, site_id: str, purpose: Purpose) -> dict[str, str]:
    return {"accountId": account_id, "siteId": site_id, "purpose": purpose}


def seal(plaintext: str, *, account_id: str, site_id: str, purpose: Purpose) -> str:
    response = kms_client().encrypt(
        KeyId=get_settings().vault_key_id,
        Plaintext=plaintext.encode("utf-8"),
        EncryptionContext=_context(account_id, site_id, purpose),
    )
    return base64.b64encode(response["CiphertextBlob"]).decode("ascii")


def unseal(ciphertext: str, *, account_id: str, site_id: str, purpose: Purpose) -> str:
    response = kms_client().decrypt(
        CiphertextBlob=base64.b64decode(ciphertext),
        EncryptionContext=_context(account_id, site_id, purpose),
    )
    return response["Plaintext"].decode("utf-8")
