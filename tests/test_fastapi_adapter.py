"""The Starlette/FastAPI adapter on real apps: prefixes, mounts, dependencies, streaming,
exceptions, sessions and the lifespan."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from observe_support import ListTracker
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.events import Event
from cdptrack.integrations.fastapi import setup, tracked_user
from cdptrack.observe.declare import track

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def get_user(request: Request) -> dict[str, str]:
    return {"id": "u-9", "email": "nine@example.com"}


def build(tracker: ListTracker, **options: Any) -> FastAPI:
    app = FastAPI()
    api = APIRouter(prefix="/api/v1")

    @api.get("/goods/{gid}")
    @track.product_page(key="gid")
    async def goods(gid: str, user: dict[str, str] = Depends(tracked_user(get_user))  # noqa: B008
                    ) -> dict[str, Any]:
        return {"product_id": gid, "price": 12.5, "name": "Goods", "in_stock": True}

    @api.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @api.get("/stream")
    def stream() -> StreamingResponse:
        def body() -> Iterator[bytes]:
            yield b"<p>"
            yield b"chunk</p>"
        track.product(product_id="S1")
        return StreamingResponse(body(), media_type="text/html")

    @api.get("/boom")
    def boom() -> None:
        raise RuntimeError("view failed")

    @api.get("/missing")
    def missing() -> None:
        raise HTTPException(404)

    @api.post("/cart/{pid}")
    def add(pid: str, request: Request) -> dict[str, Any]:
        cart = dict(request.session.get("cart", {}))
        cart[pid] = cart.get(pid, 0) + 1
        request.session["cart"] = cart
        return cart

    sub = FastAPI()
    sub_router = APIRouter(prefix="/catalog")

    @sub_router.get("/products/{sku}")
    def sub_product(sku: str) -> HTMLResponse:
        return HTMLResponse("<h1>sub</h1>")

    sub.include_router(sub_router)
    app.include_router(api)
    app.mount("/eu", sub)
    setup(app, tracker=tracker, **options)
    app.add_middleware(SessionMiddleware, secret_key="k")  # added after setup: still outside
    return app


def test_router_prefix_depends_and_decorator_with_return_value() -> None:
    tracker = ListTracker()
    with TestClient(build(tracker)) as client:
        assert client.get("/api/v1/goods/G7").json()["product_id"] == "G7"
    event = tracker.one("Product Viewed")
    assert event.properties == {"product_id": "G7", "price": 12.5, "name": "Goods",
                                "in_stock": True}
    assert (event.visitor.user_id, event.visitor.email) == ("u-9", "nine@example.com")


def test_full_templates_for_prefixed_routers_and_mounted_sub_apps() -> None:
    tracker = ListTracker()
    rules = {"/api/v1/items/{item_id}": "product:item_id",
             "/eu/catalog/products/{sku}": "product:sku"}
    client = TestClient(build(tracker, route_rules=rules))
    client.get("/api/v1/items/5")
    client.get("/eu/catalog/products/ABC")
    assert [e.properties["product_id"] for e in tracker.named("Product Viewed")] == ["5", "ABC"]
    assert tracker.one("page").properties["path"] == "/eu/catalog/products/ABC"


def test_streaming_response_events_after_the_stream() -> None:
    tracker = ListTracker()
    client = TestClient(build(tracker))
    response = client.get("/api/v1/stream")
    assert response.content == b"<p>chunk</p>"
    assert tracker.labels() == ["page", "Product Viewed"]


def test_exceptions_and_404_send_nothing() -> None:
    tracker = ListTracker()
    client = TestClient(build(tracker), raise_server_exceptions=False)
    assert client.get("/api/v1/boom").status_code == 500
    assert client.get("/api/v1/missing").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert tracker.events == []
    with pytest.raises(RuntimeError, match="view failed"):
        TestClient(build(tracker)).get("/api/v1/boom")


def test_session_cart_is_compared_with_session_middleware_outside() -> None:
    tracker = ListTracker()
    client = TestClient(build(tracker))
    client.post("/api/v1/cart/P1")
    client.post("/api/v1/cart/P1")
    events = tracker.named("Cart Updated")
    assert [e.properties["added"] for e in events] == [
        [{"product_id": "P1", "quantity": 1}], [{"product_id": "P1", "quantity": 1}]]
    assert events[1].properties["products"] == [{"product_id": "P1", "quantity": 2}]


class LifecycleTracker(ListTracker):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def astart(self) -> None:
        self.calls.append("astart")

    async def ashutdown(self, timeout: float) -> bool:
        self.calls.append("ashutdown")
        return True

    def capture(self, event: Event) -> None:
        super().capture(event)


def test_lifespan_starts_and_stops_the_tracker_and_keeps_the_apps_own() -> None:
    tracker = LifecycleTracker()
    steps: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        steps.append("user startup")
        yield {"greeting": "hello"}
        steps.append("user shutdown")

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    app.add_middleware(CDPTrackMiddleware, tracker=tracker, manage_tracker=True)
    with TestClient(app) as client:
        assert client.get("/").text == "hello"
        assert tracker.calls == ["astart"]
    assert steps == ["user startup", "user shutdown"]
    assert tracker.calls == ["astart", "ashutdown"]


def test_plain_starlette_mount_and_add_middleware_form() -> None:
    tracker = ListTracker()

    async def category(request: Request) -> HTMLResponse:
        return HTMLResponse("<p>cat</p>")

    inner = Starlette(routes=[Route("/category/{slug}", category)])
    app = Starlette(routes=[Mount("/shop", inner)])
    app.add_middleware(CDPTrackMiddleware, tracker=tracker)
    TestClient(app).get("/shop/category/boots")
    assert tracker.one("Product List Viewed").properties["category_id"] == "boots"


def test_setup_after_start_is_refused() -> None:
    app = FastAPI()
    TestClient(app).get("/")
    with pytest.raises(RuntimeError, match="before the application starts"):
        setup(app, tracker=ListTracker())


def build_login_app(tracker: ListTracker, *, dependency: bool) -> FastAPI:
    """A shop whose sign-in puts only the user id in the session; the user record (with
    its email) comes from ``user_loader`` or from a ``tracked_user`` dependency."""
    app = FastAPI()

    def current_user(request: Request) -> dict[str, str] | None:
        uid = request.session.get("user_id")
        return {"id": uid, "email": "login@example.com"} if uid else None

    @app.post("/login")
    def login(request: Request) -> dict[str, bool]:
        request.session["user_id"] = "u-5"
        return {"ok": True}

    if dependency:

        @app.get("/")
        def home(user: Any = Depends(tracked_user(current_user))) -> HTMLResponse:  # noqa: B008
            return HTMLResponse("<p>home</p>")

        setup(app, tracker=tracker)
    else:

        @app.get("/")
        def plain_home() -> HTMLResponse:
            return HTMLResponse("<p>home</p>")

        setup(app, tracker=tracker, user_loader=current_user)
    app.add_middleware(SessionMiddleware, secret_key="k")
    return app


@pytest.mark.parametrize("dependency", [False, True], ids=["user_loader", "tracked_user"])
def test_signed_in_user_identifies_once_not_on_every_request(dependency: bool) -> None:
    tracker = ListTracker()
    client = TestClient(build_login_app(tracker, dependency=dependency))
    client.post("/login")
    client.get("/")
    client.get("/")
    assert tracker.one("identify").visitor.user_id == "u-5"
    pages = tracker.named("page")
    assert [(p.visitor.user_id, p.visitor.email) for p in pages] == [
        ("u-5", "login@example.com")] * 2


def test_declarations_on_http_endpoint_classes() -> None:
    from starlette.endpoints import HTTPEndpoint

    @track.product_page(key="sku")
    class ProductEndpoint(HTTPEndpoint):
        async def get(self, request: Request) -> HTMLResponse:
            return HTMLResponse("<h1>lamp</h1>")

    @track.ignore()
    class StatusEndpoint(HTTPEndpoint):
        async def get(self, request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

    assert isinstance(ProductEndpoint, type) and issubclass(ProductEndpoint, HTTPEndpoint)
    tracker = ListTracker()
    inner = Starlette(routes=[Route("/lamps/{sku}", ProductEndpoint)])
    app = Starlette(routes=[Mount("/shop", inner), Route("/status", StatusEndpoint)])
    setup(app, tracker=tracker)
    client = TestClient(app)
    client.get("/shop/lamps/L-3")
    assert tracker.one("Product Viewed").properties == {"product_id": "L-3"}
    assert tracker.one("page").name == "Product"
    tracker.clear()
    response = TestClient(app).get("/status")
    assert response.text == "ok"
    assert tracker.events == []
    assert "set-cookie" not in response.headers
