"""The one app factory: the same liveness route, middleware order and lifespan everywhere."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from auth_service.app import create_app as create_auth_app
from auth_service.deps import AuthState
from auth_service.settings import AuthSettings
from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from shared.app import YOUNG_COLLECTION_THRESHOLD, attach_state, create_base_app, state_of
from shared.deps import ServiceState
from shared.middleware import RequestContextMiddleware, UnhandledErrorMiddleware
from shared.settings import CommonSettings
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings
from tests.support.asgi import serving
from tests.support.http_server import free_port
from tests.support.tokens import SECRET_KEY


def _auth(tmp_path: Path) -> FastAPI:
    return create_auth_app(
        AuthSettings(_env_file=None, data_dir=tmp_path, secret_key=SecretStr(SECRET_KEY))
    )


def _tasks(tmp_path: Path) -> FastAPI:
    return create_task_app(
        TaskSettings(_env_file=None, data_dir=tmp_path, secret_key=SecretStr(SECRET_KEY))
    )


def _gateway(_tmp_path: Path) -> FastAPI:
    unused = f"http://127.0.0.1:{free_port()}"
    return create_gateway_app(
        GatewaySettings(_env_file=None, auth_service_url=unused, task_service_url=unused)
    )


PROCESSES: list[tuple[str, Callable[[Path], FastAPI], type]] = [
    ("auth", _auth, AuthState),
    ("tasks", _tasks, ServiceState),
    ("gateway", _gateway, GatewayState),
]


@pytest.mark.parametrize(
    ("make", "state_type"), [p[1:] for p in PROCESSES], ids=[p[0] for p in PROCESSES]
)
async def test_every_process_has_one_liveness_route_answering_alike(
    tmp_path: Path, make: Callable[[Path], FastAPI], state_type: type
) -> None:
    app = make(tmp_path)
    async with serving(app, "http://process.test") as client:
        live = await client.get("/health/live")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert isinstance(state_of(app, state_type), state_type)
    schema = app.openapi()["paths"]["/health/live"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HealthResponse"
    }


@pytest.mark.parametrize("make", [p[1] for p in PROCESSES], ids=[p[0] for p in PROCESSES])
def test_every_process_wraps_its_middleware_in_the_same_order(
    tmp_path: Path, make: Callable[[Path], FastAPI]
) -> None:
    classes: list[object] = [entry.cls for entry in make(tmp_path).user_middleware]

    assert classes[0] is RequestContextMiddleware
    assert UnhandledErrorMiddleware in classes[1:]


async def test_teardown_runs_when_start_up_fails() -> None:
    closed: list[str] = []

    async def fail() -> None:
        raise RuntimeError("database unreachable")

    async def close(name: str) -> None:
        closed.append(name)

    async def close_first() -> None:
        await close("first")
        raise RuntimeError("closing failed")

    async def close_second() -> None:
        await close("second")

    app = create_base_app(
        name="test",
        title="t",
        description="d",
        settings=CommonSettings(_env_file=None),
        state=object(),
        routers=[],
        startup=[fail],
        shutdown=[close_first, close_second],
    )

    with pytest.raises(RuntimeError, match="database unreachable"):
        async with LifespanManager(app):
            pass

    assert closed == ["first", "second"], "each teardown step runs, in order, even after one fails"


class _Cyclic:
    """An object that only the garbage collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.itself = self


@pytest.mark.parametrize("make", [p[1] for p in PROCESSES], ids=[p[0] for p in PROCESSES])
async def test_every_process_serves_with_its_start_up_heap_frozen(
    tmp_path: Path, make: Callable[[Path], FastAPI]
) -> None:
    before = gc.get_threshold()
    app = make(tmp_path)
    # Alive at start-up, dropped while the app serves: frozen, it is kept until the end.
    made_at_start_up = _Cyclic()
    gone = weakref.ref(made_at_start_up)

    async with LifespanManager(app):
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
        assert gc.get_freeze_count() > 0
        del made_at_start_up
        gc.collect()
        assert gone() is not None, "a frozen object is out of the collector's reach"
        made_while_serving = weakref.ref(_Cyclic())
        gc.collect()
        assert made_while_serving() is None, "what the app makes is collected as usual"

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None, "after shutdown, what start-up made can be collected again"


def test_the_state_is_set_once_and_read_back_typed() -> None:
    app = FastAPI()
    attach_state(app, "the state")

    with pytest.raises(RuntimeError):
        attach_state(app, "another")
    with pytest.raises(TypeError):
        state_of(app, int)
    assert state_of(app, str) == "the state"


@pytest.mark.parametrize("make", [p[1] for p in PROCESSES], ids=[p[0] for p in PROCESSES])
async def test_every_process_serves_a_trailing_slash_as_without_it(
    tmp_path: Path, make: Callable[[Path], FastAPI]
) -> None:
    app = make(tmp_path)
    async with serving(app, "http://process.test") as client:
        plain = await client.get("/health/live")
        slashed = await client.get("/health/live/")
        unknown = await client.get("/no-such-route/")

    assert slashed.status_code == plain.status_code == 200
    assert slashed.json() == plain.json()
    assert unknown.status_code == 404, "a slash never turns into a redirect"


class _AnswersDirect:
    """Answers `/direct/known` itself, as the gateway's proxy answers its paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/direct/known":
            await PlainTextResponse("answered by the middleware")(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def test_a_shortcut_request_meets_the_middleware_but_no_route() -> None:
    router = APIRouter()

    @router.get("/direct/{name}")
    async def routed(name: str) -> str:
        return f"routed {name}"

    app = create_base_app(
        name="test",
        title="t",
        description="d",
        settings=CommonSettings(_env_file=None),
        state=object(),
        routers=[router],
        inner_middleware=[Middleware(_AnswersDirect)],
        response_headers=[(b"x-everywhere", b"yes")],
        shortcut=lambda scope: scope["path"].startswith("/direct"),
    )
    async with serving(app, "http://process.test") as client:
        answered = await client.get("/direct/known/", headers={"X-Request-ID": "short-1"})
        unanswered = await client.get("/direct/other", headers={"X-Request-ID": "short-2"})
        liveness = await client.get("/health/live")

    # Through the request id, security headers and trailing-slash rewrite like any request.
    assert answered.text == "answered by the middleware"
    assert answered.headers["x-request-id"] == "short-1"
    assert answered.headers["x-everywhere"] == "yes"
    # Never to the routes: what the middleware leaves is the API's 500, still with its id.
    assert unanswered.status_code == 500
    assert unanswered.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    assert unanswered.headers["x-request-id"] == "short-2"
    assert liveness.json() == {"status": "ok"}
