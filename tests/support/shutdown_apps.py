"""Shops for the shutdown tests, configured from the ``CDPTRACK_*`` environment:
``mounted``, a Starlette shop tracked with ``setup()`` and mounted under ``/shop`` in an
outer app (mounted apps get no lifespan), ``fastapi_mounted``, the same with FastAPI,
and ``flask_app`` for gunicorn."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse as FastAPIHTML
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from cdptrack.integrations.fastapi import setup as fastapi_setup
from cdptrack.integrations.flask import CDPTrack
from cdptrack.integrations.starlette import setup


async def product(request: Request) -> HTMLResponse:
    return HTMLResponse(f"<p>{request.path_params['product_id']}</p>")


shop = Starlette(routes=[Route("/products/{product_id}", product)])
setup(shop)
mounted = Starlette(routes=[Mount("/shop", app=shop)])

fastapi_shop = FastAPI()


@fastapi_shop.get("/products/{product_id}", response_class=FastAPIHTML)
async def fastapi_product(product_id: str) -> str:
    return f"<p>{product_id}</p>"


fastapi_setup(fastapi_shop)
fastapi_mounted = FastAPI()
fastapi_mounted.mount("/shop", fastapi_shop)

flask_app = Flask(__name__)


@flask_app.get("/products/<product_id>")
def flask_product(product_id: str) -> str:
    return f"<p>{product_id}</p>"


CDPTrack(flask_app)
