"""Encryption at rest for the values admins store (City's ``/v1/env``): Fernet, one key.

Which key (``load_secret_key``):

- ``TOLLWAY_SECRET_KEY`` when set. It is either a Fernet key (32 bytes in URL-safe base64, as
  ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``
  prints), used as is, or any other string of at least 32 characters, turned into a Fernet key
  with HKDF-SHA256 (fixed salt and info, below). HKDF is not a password hash: that string must
  be random (``openssl rand -hex 32`` is), not a memorable phrase.
- Otherwise a key generated at the first start and stored in the ``meta`` table (row
  ``secret_key``) with ``set_if_absent``, so processes starting together on an empty
  database agree on one key.

Only ``TOLLWAY_SECRET_KEY`` gives real protection at rest: a generated key lives in the same
database as the values it encrypts, so anyone holding the database (or a backup of it) can
read them; it only keeps clear values out of ``SELECT *`` output and table dumps. Every
replica must be given the same ``TOLLWAY_SECRET_KEY``; a generated key is shared through the
database by itself.

A wrong key is caught at start: the first start stores a check value encrypted with its key
(meta row ``secret_key_check``), and every later start must decrypt it, else a ConfigError
naming ``TOLLWAY_SECRET_KEY`` explains what to do. A stored value that does not decrypt later
(``SecretBox.decrypt``) is the same ConfigError, never a traceback. Replacing the key re-keys
nothing: values written with the old key stay unreadable until written again, so changing it
on purpose means removing the stored values (and the ``secret_key_check`` row) first.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.exc import IntegrityError

from tollway.core.errors import ConfigError
from tollway.store.meta import MetaRepository

ENV_NAME = "TOLLWAY_SECRET_KEY"
META_KEY = "secret_key"
META_CHECK = "secret_key_check"
MIN_PASSPHRASE = 32
_CHECK_TEXT = "tollway secret key check"
_HKDF_SALT = b"tollway/secret-key/v1"
_HKDF_INFO = b"tollway env_vars fernet key"

WRONG_KEY = (f"a stored value does not decrypt with the current secret key: set {ENV_NAME} to the key the "
             "values were written with (every replica must use the same one)")
_UNSET = f"the stored values were written with {ENV_NAME}, which is not set now: set it again"


class SecretBox:
    """Encrypts text to a Fernet token (ASCII) and back; a token it cannot read is a ConfigError."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise ConfigError(WRONG_KEY) from None

    def can_decrypt(self, token: str) -> bool:
        try:
            self.decrypt(token)
        except ConfigError:
            return False
        return True


def fernet_key(value: str) -> bytes:
    """The Fernet key ``TOLLWAY_SECRET_KEY`` names: itself if it is one, else HKDF-SHA256 of it."""
    value = value.strip()
    try:
        if len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32:
            return value.encode("ascii")
    except (binascii.Error, ValueError):
        pass
    if len(value) < MIN_PASSPHRASE:
        raise ConfigError(f"{ENV_NAME} must be a Fernet key (Fernet.generate_key()) or a random string of at "
                          f"least {MIN_PASSPHRASE} characters, not one of {len(value)}")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        value.encode("utf-8"))
    return base64.urlsafe_b64encode(derived)


async def load_secret_key(settings_env: Mapping[str, str], meta: MetaRepository) -> bytes:
    """The key stored values are encrypted with (see the module doc); a wrong one is a ConfigError."""
    configured = settings_env.get(ENV_NAME, "").strip()
    if configured:
        key = fernet_key(configured)
    else:
        if await meta.get(META_KEY) is None and await meta.get(META_CHECK) is not None:
            raise ConfigError(_UNSET)
        key = (await _set_if_absent(meta, META_KEY, Fernet.generate_key().decode("ascii"))).encode("ascii")
        if not _is_fernet_key(key):
            raise ConfigError(f"the meta row {META_KEY!r} does not hold a Fernet key: set {ENV_NAME}")
    box = SecretBox(key)
    check = await _set_if_absent(meta, META_CHECK, box.encrypt(_CHECK_TEXT))
    if box.can_decrypt(check):
        return key
    if not configured:
        raise ConfigError(_UNSET)
    generated = await meta.get(META_KEY)
    if generated is not None and _opens(generated, check):
        raise ConfigError(f"the stored values were written with the key generated at first start, not "
                          f"{ENV_NAME}: set {ENV_NAME} to the value of the meta row {META_KEY!r} to keep them "
                          "(that moves the key out of the database)")
    raise ConfigError(f"{ENV_NAME} is not the key this database's values were written with: set the one used "
                      "before (every replica must share it)")


async def _set_if_absent(meta: MetaRepository, key: str, value: str) -> str:
    """``meta.set_if_absent``; a first start racing another one reads the row that one wrote."""
    try:
        return await meta.set_if_absent(key, value)
    except IntegrityError:
        return await meta.set_if_absent(key, value)


def _is_fernet_key(key: bytes) -> bool:
    try:
        Fernet(key)
    except ValueError:
        return False
    return True


def _opens(key: str, token: str) -> bool:
    """Whether ``key`` (text that may not even be a key) decrypts ``token``."""
    try:
        return SecretBox(key.encode("ascii")).can_decrypt(token)
    except ValueError:  # not ASCII, or not a Fernet key
        return False
