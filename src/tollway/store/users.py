"""City accounts: users, their links to OAuth providers, and the OAuth states of sign-ins.

Emails are kept lower-cased; a user's password hash is only handed out by ``for_login`` and
never sits on ``User``. An OAuth state lives from ``oauth/start`` to the first successful
``oauth/result`` poll: pending while the browser is away, claimed by exactly one callback
(which clears the single-use PKCE verifier), then succeeded (holding the issued user_token
until it is collected once) or failed. Rows an hour past their expiry are purged.
"""

from __future__ import annotations

import time

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.store.tables import oauth_states, user_links, users

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    email: str | None
    name: str
    studio_id: str | None
    created_at: float

    def public(self) -> dict[str, object]:
        return {"id": self.id, "email": self.email, "name": self.name, "studio_id": self.studio_id}


class OAuthState(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    provider: str
    code_verifier: str  # "" once a callback has claimed the state
    studio_id: str | None
    status: str  # pending | succeeded | failed
    error: str | None
    has_token: bool  # a succeeded state whose user_token nobody has collected yet
    created_at: float
    expires_at: float

    @property
    def claimed(self) -> bool:
        return self.code_verifier == ""


class _Handoff(msgspec.Struct, frozen=True):
    """What a succeeded state keeps for its poller: the user_token and whose it is."""

    token: str
    user_id: int


_handoff = msgspec.json.Decoder(_Handoff)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _user(r: sa.Row[tuple[object, ...]]) -> User:
    m = r._mapping
    return User(id=int(str(m["id"])), email=None if m["email"] is None else str(m["email"]), name=str(m["name"]),
                studio_id=None if m["studio_id"] is None else str(m["studio_id"]),
                created_at=float(str(m["created_at"])))


def _state(r: sa.Row[tuple[object, ...]]) -> OAuthState:
    m = r._mapping
    return OAuthState(state=str(m["state"]), provider=str(m["provider"]), code_verifier=str(m["code_verifier"]),
                      studio_id=None if m["studio_id"] is None else str(m["studio_id"]), status=str(m["status"]),
                      error=None if m["error"] is None else str(m["error"]), has_token=m["token"] is not None,
                      created_at=float(str(m["created_at"])), expires_at=float(str(m["expires_at"])))


class UserRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, user_id: int) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return _user(row) if row is not None else None

    async def by_email(self, email: str) -> User | None:
        found = await self.for_login(email)
        return found[0] if found is not None else None

    async def for_login(self, email: str) -> tuple[User, str | None] | None:
        """The user with this email and their password hash (None for OAuth-only users)."""
        q = sa.select(users).where(users.c.email == normalize_email(email))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        h = row._mapping["password_hash"]
        return _user(row), None if h is None else str(h)

    async def create(self, *, email: str | None, name: str, password_hash: str | None = None,
                     studio_id: str | None = None) -> User | None:
        """A new user, or None when another already has this email."""
        try:
            async with self.engine.begin() as conn:
                return await _insert_user(conn, email=email, name=name, password_hash=password_hash,
                                          studio_id=studio_id)
        except IntegrityError:
            return None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(users.update().where(users.c.id == user_id).values(password_hash=password_hash))

    # provider links ----------------------------------------------------------------------

    async def by_link(self, provider: str, subject: str) -> User | None:
        q = (sa.select(users).join(user_links, user_links.c.user_id == users.c.id)
             .where(user_links.c.provider == provider, user_links.c.subject == subject))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _user(row) if row is not None else None

    async def link(self, provider: str, subject: str, user_id: int) -> bool:
        """Link the provider's account to the user; False when it is linked already."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(user_links.insert().values(provider=provider, subject=subject, user_id=user_id,
                                                              created_at=time.time()))
        except IntegrityError:
            return False
        return True

    async def create_linked(self, *, provider: str, subject: str, email: str | None, name: str,
                            studio_id: str | None) -> User | None:
        """A new user and its link, together; None when the email or the link exists already."""
        try:
            async with self.engine.begin() as conn:
                user = await _insert_user(conn, email=email, name=name, password_hash=None, studio_id=studio_id)
                await conn.execute(user_links.insert().values(provider=provider, subject=subject, user_id=user.id,
                                                              created_at=user.created_at))
                return user
        except IntegrityError:
            return None


async def _insert_user(conn: AsyncConnection, *, email: str | None, name: str, password_hash: str | None,
                       studio_id: str | None) -> User:
    now = time.time()
    result = await conn.execute(users.insert().values(
        email=None if email is None else normalize_email(email), name=name, password_hash=password_hash,
        studio_id=studio_id, created_at=now))
    user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).one()
    return _user(row)


class OAuthStateRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, *, state: str, provider: str, code_verifier: str, studio_id: str | None,
                     ttl: float) -> OAuthState:
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(oauth_states.insert().values(
                state=state, provider=provider, code_verifier=code_verifier, studio_id=studio_id, status=PENDING,
                token=None, error=None, created_at=now, expires_at=now + ttl))
        return OAuthState(state=state, provider=provider, code_verifier=code_verifier, studio_id=studio_id,
                          status=PENDING, error=None, has_token=False, created_at=now, expires_at=now + ttl)

    async def get(self, state: str) -> OAuthState | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(oauth_states).where(oauth_states.c.state == state))).first()
        return _state(row) if row is not None else None

    async def claim(self, state: str, now: float) -> bool:
        """Take a pending, unexpired state for one callback: only one caller ever gets True.
        Its PKCE verifier is cleared here; read it (``get``) before claiming."""
        q = (oauth_states.update()
             .where(oauth_states.c.state == state, oauth_states.c.status == PENDING,
                    oauth_states.c.code_verifier != "", oauth_states.c.expires_at > now)
             .values(code_verifier=""))
        async with self.engine.begin() as conn:
            return bool((await conn.execute(q)).rowcount == 1)

    async def succeed(self, state: str, *, token: str, user_id: int) -> None:
        handoff = msgspec.json.encode(_Handoff(token, user_id)).decode()
        async with self.engine.begin() as conn:
            await conn.execute(oauth_states.update().where(oauth_states.c.state == state)
                               .values(status=SUCCEEDED, token=handoff, error=None))

    async def fail(self, state: str, error: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(oauth_states.update().where(oauth_states.c.state == state)
                               .values(status=FAILED, token=None, error=error[:500]))

    async def collect(self, state: str) -> tuple[str, int] | None:
        """The succeeded state's (user_token, user id), removed from the row: only one caller
        ever gets it; everyone after gets None."""
        async with self.engine.begin() as conn:
            raw = (await conn.execute(sa.select(oauth_states.c.token).where(
                oauth_states.c.state == state, oauth_states.c.status == SUCCEEDED))).scalar()
            if raw is None:
                return None
            taken = await conn.execute(oauth_states.update()
                                       .where(oauth_states.c.state == state, oauth_states.c.token == raw)
                                       .values(token=None))
            if taken.rowcount != 1:
                return None
        handoff = _handoff.decode(str(raw))
        return handoff.token, handoff.user_id

    async def purge(self, before: float) -> int:
        """Delete states that expired before ``before`` (with any token nobody collected)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(oauth_states.delete().where(oauth_states.c.expires_at < before))
            return int(result.rowcount or 0)
