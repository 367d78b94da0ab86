"""Each service's typed state and the dependencies derived from it.

A service's state is a `ServiceState` (or a subclass adding what that service alone owns),
built by its factory from the settings and set on the app once. Routes never read
`app.state` themselves: they ask for `SessionDep`, `CurrentPrincipal` (shared/auth.py) or
their service's own aliases, all derived from `ServiceStateDep`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from shared.app import state_of
from shared.db import Database
from shared.settings import ServiceSettings
from shared.tokens import TokenVerifier

ServiceSettingsT = TypeVar("ServiceSettingsT", bound=ServiceSettings)


@dataclass(frozen=True, kw_only=True)
class ServiceState(Generic[ServiceSettingsT]):
    """What a service's routes share; the lifespan closes it."""

    settings: ServiceSettingsT
    database: Database
    verifier: TokenVerifier

    async def aclose(self) -> None:
        """Close what the state holds; subclasses close their own parts, then call this."""
        try:
            await self.verifier.aclose()
        finally:
            await self.database.dispose()


def service_state(app: Starlette) -> ServiceState[Any]:
    """The state of a service's app (for code outside a request, such as tests)."""
    return state_of(app, ServiceState)


# Dependencies are coroutines even when they await nothing: FastAPI runs a plain function in
# a worker thread, a hand-off that costs every request more than the function itself.


async def get_service_state(request: Request) -> ServiceState[Any]:
    return service_state(request.app)


ServiceStateDep = Annotated[ServiceState[Any], Depends(get_service_state)]


async def get_session(state: ServiceStateDep) -> AsyncIterator[AsyncSession]:
    """A session on the service's database for the length of one request."""
    async with state.database.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_database(state: ServiceStateDep) -> Database:
    """The service's database, for routes that open their own connection."""
    return state.database


DatabaseDep = Annotated[Database, Depends(get_database)]
