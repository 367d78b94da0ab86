"""The one token verifier: what it accepts and what it refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from shared.settings import ServiceSettings
from shared.tokens import (
    DEFAULT_LEEWAY_SECONDS,
    InvalidTokenError,
    JWKSCache,
    JWKSKeys,
    Principal,
    SharedSecrets,
    SigningKeysUnavailableError,
    SigningSecret,
    TokenExpiredError,
    TokenSource,
    TokenVerifier,
    VerifiedTokens,
    create_verifier,
)
from tests.support.better_auth import FakeBetterAuth, serve_better_auth
from tests.support.http_server import free_port
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, mint, unsigned


def _settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(_env_file=None, secret_key=SecretStr(SECRET_KEY), **values)


@pytest.fixture
def verifier() -> TokenVerifier:
    return create_verifier(_settings(better_auth_secret=SecretStr(BETTER_AUTH_SECRET)))


async def test_own_token_names_its_subject(verifier: TokenVerifier) -> None:
    principal = await verifier.verify(mint(sub="u-42"))

    assert principal.user_id == "u-42"
    assert principal.claims["type"] == "access"


@pytest.mark.parametrize("claim", ["sub", "id", "userId"])
async def test_frontend_token_may_name_the_user_in_sub_id_or_userid(
    verifier: TokenVerifier, claim: str
) -> None:
    claims: dict[str, Any] = {"sub": None, "type": None, claim: "ba-user-7"}
    token = mint(BETTER_AUTH_SECRET, **claims)

    assert (await verifier.verify(token)).user_id == "ba-user-7"


async def test_numeric_user_id_of_a_frontend_becomes_a_string(verifier: TokenVerifier) -> None:
    token = mint(BETTER_AUTH_SECRET, sub=None, id=12)

    assert (await verifier.verify(token)).user_id == "12"


@pytest.mark.parametrize("claim", ["id", "userId"])
async def test_own_tokens_must_name_the_user_in_sub(verifier: TokenVerifier, claim: str) -> None:
    claims: dict[str, Any] = {"sub": None, claim: "u-42"}

    with pytest.raises(InvalidTokenError):
        await verifier.verify(mint(SECRET_KEY, **claims))


@pytest.mark.parametrize("sub", ["", "   ", 7, None])
async def test_a_present_but_unusable_sub_is_never_replaced_by_id(
    verifier: TokenVerifier, sub: object
) -> None:
    # mint() leaves out claims given as None: send a JSON null explicitly.
    token = jwt.encode(
        {"sub": sub, "id": "u-42", "userId": "u-42", "exp": int(time.time()) + 60},
        BETTER_AUTH_SECRET,
        algorithm="HS256",
    )

    with pytest.raises(InvalidTokenError):
        await verifier.verify(token)


async def test_id_comes_before_userid(verifier: TokenVerifier) -> None:
    token = mint(BETTER_AUTH_SECRET, sub=None, id="by-id", userId="by-user-id")

    assert (await verifier.verify(token)).user_id == "by-id"


async def test_with_one_secret_for_both_its_tokens_may_use_id() -> None:
    # Nothing tells the auth service's tokens from the frontend's: both kinds are accepted.
    shared = create_verifier(_settings(better_auth_secret=SecretStr(SECRET_KEY)))

    assert (await shared.verify(mint(SECRET_KEY, sub=None, userId="u-7"))).user_id == "u-7"
    assert (await shared.verify(mint(SECRET_KEY, sub="u-8"))).user_id == "u-8"


async def test_audience_claim_without_configured_audience_is_fine(
    verifier: TokenVerifier,
) -> None:
    assert (await verifier.verify(mint(aud="todo-app"))).user_id == "user-1"


REJECTED: list[tuple[str, Callable[[], str]]] = [
    ("garbage", lambda: "a.b.c"),
    ("empty", lambda: ""),
    ("alg-none", unsigned),
    ("forged", lambda: mint("x" * 40)),
    ("expired", lambda: mint(lifetime=-120)),
    ("no-exp", lambda: mint(exp=None)),
    ("future-iat", lambda: mint(iat=int(time.time()) + 3600)),
    ("refresh-type", lambda: mint(type="refresh")),
    ("no-subject", lambda: mint(sub=None)),
    ("blank-subject", lambda: mint(sub="  ")),
    ("list-subject", lambda: mint(sub=["a"])),
    ("huge-subject", lambda: mint(sub="u" * 300)),
    ("control-char-subject", lambda: mint(sub="user\x00-1")),
    ("wrong-typ", lambda: mint(headers={"typ": "refresh+jwt"})),
    ("oversized", lambda: mint(padding="p" * 9000)),
    ("hs512", lambda: jwt.encode({"sub": "u", "exp": time.time() + 60}, "k" * 64, "HS512")),
]


@pytest.mark.parametrize("make", [m for _, m in REJECTED], ids=[n for n, _ in REJECTED])
async def test_unacceptable_tokens_are_refused(
    verifier: TokenVerifier, make: Callable[[], str]
) -> None:
    with pytest.raises(InvalidTokenError):
        await verifier.verify(make())


async def test_frontend_secret_is_only_trusted_when_configured() -> None:
    ours_only = create_verifier(_settings())

    with pytest.raises(InvalidTokenError):
        await ours_only.verify(mint(BETTER_AUTH_SECRET))


async def test_eddsa_token_is_refused_without_a_jwks_url(verifier: TokenVerifier) -> None:
    key = Ed25519PrivateKey.generate()
    token = jwt.encode({"sub": "u", "exp": time.time() + 60}, key, algorithm="EdDSA")

    with pytest.raises(InvalidTokenError):
        await verifier.verify(token)


@pytest.fixture
async def better_auth() -> AsyncIterator[tuple[FakeBetterAuth, str]]:
    async with serve_better_auth("k1") as served:
        yield served


def _with_cache(
    cache: JWKSCache, *, issuer: str | None = None, audience: str | None = None
) -> TokenVerifier:
    """Our own HS256 tokens, and Better Auth's from this cache's JWKS."""
    own = SigningSecret(SECRET_KEY, TokenSource.AUTH_SERVICE)
    return TokenVerifier(
        [
            SharedSecrets([own], leeway=DEFAULT_LEEWAY_SECONDS),
            JWKSKeys(cache, issuer=issuer, audience=audience),
        ]
    )


def _jwks_verifier(
    url: str, *, issuer: str | None = None, audience: str | None = None
) -> TokenVerifier:
    return _with_cache(JWKSCache(url, min_refresh_interval=0), issuer=issuer, audience=audience)


async def test_better_auth_eddsa_token_verifies_against_its_jwks(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    verifier = _jwks_verifier(url)

    first = await verifier.verify(fake.token("k1"))
    second = await verifier.verify(fake.token("k1", sub="someone-else"))
    await verifier.aclose()

    assert (first.user_id, second.user_id) == ("ba-user", "someone-else")
    assert fake.fetches == 1, "keys are cached between requests"


async def test_better_auth_token_may_name_the_user_in_id(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    verifier = _jwks_verifier(url)

    by_id = await verifier.verify(fake.token("k1", sub=None, id="ba-9"))
    with pytest.raises(InvalidTokenError):
        await verifier.verify(fake.token("k1", sub="", id="ba-9"))
    await verifier.aclose()

    assert by_id.user_id == "ba-9"


@pytest.mark.parametrize(
    "cache",
    [
        pytest.param(lambda url: JWKSCache(url, min_refresh_interval=0), id="refetch-at-will"),
        # The default spacing of refetches: a key rotated in moments after a fetch still
        # works on its first use.
        pytest.param(JWKSCache, id="moments-after-a-fetch"),
    ],
)
async def test_a_rotated_in_key_is_fetched_once(
    better_auth: tuple[FakeBetterAuth, str], cache: Callable[[str], JWKSCache]
) -> None:
    fake, url = better_auth
    verifier = _with_cache(cache(url))
    await verifier.verify(fake.token("k1"))

    fake.add_key("k2")
    principal = await verifier.verify(fake.token("k2"))
    await verifier.aclose()

    assert principal.user_id == "ba-user"
    assert fake.fetches == 2


async def test_made_up_key_ids_do_not_cause_a_fetch_per_request(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    verifier = _with_cache(JWKSCache(url, min_refresh_interval=60))
    await verifier.verify(fake.token("k1"))
    impostor = FakeBetterAuth()
    for kid in ("k7", "k8", "k9", "k10", "k11"):
        impostor.add_key(kid)

    for kid in ("k7", "k8", "k9", "k10", "k11"):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(impostor.token(kid))
    await verifier.aclose()

    assert fake.fetches == 2, "one fetch for the first unknown key id, then none for a minute"


async def test_concurrent_requests_with_a_new_key_share_one_fetch(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    verifier = _with_cache(JWKSCache(url))
    await verifier.verify(fake.token("k1"))
    fake.add_key("k2")
    token = fake.token("k2")

    principals = await asyncio.gather(*(verifier.verify(token) for _ in range(10)))
    await verifier.aclose()

    assert {p.user_id for p in principals} == {"ba-user"}
    assert fake.fetches == 2


async def test_token_signed_with_another_key_under_a_published_key_id_is_refused(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    _fake, url = better_auth
    impostor = FakeBetterAuth()
    impostor.add_key("k1")
    verifier = _jwks_verifier(url)

    with pytest.raises(InvalidTokenError):
        await verifier.verify(impostor.token("k1"))
    await verifier.aclose()


async def test_issuer_and_audience_are_checked_when_configured(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    verifier = _jwks_verifier(url, issuer="https://app.example", audience="https://app.example")

    good = fake.token("k1", iss="https://app.example", aud="https://app.example")
    assert (await verifier.verify(good)).user_id == "ba-user"
    for bad in (
        fake.token("k1", iss="https://evil.example", aud="https://app.example"),
        fake.token("k1", iss="https://app.example", aud="https://other.example"),
        fake.token("k1"),
    ):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(bad)
    await verifier.aclose()


async def test_unreachable_jwks_is_an_outage_not_a_bad_token() -> None:
    verifier = _jwks_verifier(f"http://127.0.0.1:{free_port()}/api/auth/jwks")
    key = Ed25519PrivateKey.generate()
    token = jwt.encode({"sub": "u", "exp": time.time() + 60}, key, "EdDSA", headers={"kid": "k"})

    with pytest.raises(SigningKeysUnavailableError):
        await verifier.verify(token)
    await verifier.aclose()


async def test_an_unknown_key_id_while_the_jwks_fails_is_an_outage_not_a_bad_token(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    cache = JWKSCache(url, min_refresh_interval=0)
    verifier = _with_cache(cache)
    await verifier.verify(fake.token("k1"))
    fake.add_key("k2")  # rotated in while the endpoint is down: we cannot tell
    fake.up = False
    cache.min_refresh_interval = 60  # from the next fetch on, one a minute at most

    for _ in range(4):
        with pytest.raises(SigningKeysUnavailableError):
            await verifier.verify(fake.token("k2"))
    known = await verifier.verify(fake.token("k1"))
    await verifier.aclose()

    assert fake.fetches == 2
    assert known.user_id == "ba-user"


async def test_an_unknown_key_id_once_the_jwks_is_unreachable_is_an_outage() -> None:
    async with serve_better_auth("k1") as (fake, url):
        verifier = _jwks_verifier(url)
        await verifier.verify(fake.token("k1"))
        fake.add_key("k2")
    # The server is gone: its port refuses connections.

    with pytest.raises(SigningKeysUnavailableError):
        await verifier.verify(fake.token("k2"))
    await verifier.aclose()


async def test_an_unknown_key_id_after_a_good_fetch_is_a_bad_token(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    _fake, url = better_auth
    verifier = _jwks_verifier(url)
    impostor = FakeBetterAuth()
    impostor.add_key("k7")

    with pytest.raises(InvalidTokenError):
        await verifier.verify(impostor.token("k7"))
    await verifier.aclose()


async def test_known_keys_keep_working_while_the_jwks_is_down(
    better_auth: tuple[FakeBetterAuth, str],
) -> None:
    fake, url = better_auth
    cache = JWKSCache(url, ttl=0, min_refresh_interval=0)
    verifier = _with_cache(cache)
    await verifier.verify(fake.token("k1"))

    fake.up = False
    principal = await verifier.verify(fake.token("k1"))
    await verifier.aclose()

    assert principal.user_id == "ba-user"


class _CountingSecrets(SharedSecrets):
    """Our own HS256 secret, counting the tokens it is asked to check."""

    def __init__(self) -> None:
        super().__init__([SigningSecret(SECRET_KEY, TokenSource.AUTH_SERVICE)], leeway=0)
        self.checked = 0

    async def claims(self, token: str, header: Any) -> Any:
        self.checked += 1
        return await super().claims(token, header)


async def test_a_verified_token_is_not_checked_again_on_its_next_request() -> None:
    secrets = _CountingSecrets()
    verifier = TokenVerifier([secrets], leeway=0)
    token = mint(sub="user-7")

    first = await verifier.verify(token)
    again = await verifier.verify(token)

    assert first == again
    assert again.user_id == "user-7"
    assert secrets.checked == 1


async def test_a_kept_token_is_refused_once_it_expires() -> None:
    secrets = _CountingSecrets()
    verifier = TokenVerifier([secrets], leeway=0)
    token = mint(lifetime=1)
    await verifier.verify(token)

    await asyncio.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.05
    )

    with pytest.raises(TokenExpiredError):
        await verifier.verify(token)
    assert secrets.checked == 2


async def test_refused_tokens_are_checked_every_time() -> None:
    secrets = _CountingSecrets()
    verifier = TokenVerifier([secrets], leeway=0)
    token = mint(BETTER_AUTH_SECRET)

    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)
    assert secrets.checked == 2


def test_kept_tokens_are_bounded_in_number_and_age() -> None:
    principal = Principal(
        user_id="u", claims={"exp": time.time() + 900}, source=TokenSource.AUTH_SERVICE
    )
    kept = VerifiedTokens(size=2, leeway=0)
    for token in ("a", "b", "c"):
        kept.put(token, principal)
    assert [kept.get(token) for token in ("a", "b", "c")] == [None, principal, principal]

    aged = VerifiedTokens(max_age=0, leeway=0)
    aged.put("a", principal)
    assert aged.get("a") is None
