"""A Django shop served by real servers in the hardening tests: over ASGI by uvicorn
(``application``) and over WSGI by gunicorn (``wsgi_application``).  cdptrack is
configured from the ``CDPTRACK_*`` environment; ``SHUTDOWN_WRAP=1`` serves the ASGI app
through :func:`cdptrack.integrations.django.asgi_application` (a lifespan), otherwise as
Django's bare ASGI handler (no lifespan: the signal and server hooks must drain the
tracker).  ``/own-sc/`` sets the ``sc`` cookie itself, as some shops do."""

from __future__ import annotations

import os

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["cdptrack.integrations.django.CDPTrackMiddleware"],
    INSTALLED_APPS=[],
    USE_TZ=True,
)

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from cdptrack.integrations.django import asgi_application  # noqa: E402


def product(request: HttpRequest, product_id: str) -> HttpResponse:
    return HttpResponse(f"<p>{product_id}</p>", content_type="text/html")


APP_SC = "0F0E0D0C-0B0A-4908-8706-050403020100"  # tests compare with this literal


def own_sc(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("<p>welcome</p>", content_type="text/html")
    response.set_cookie("sc", APP_SC, max_age=3600)
    return response


def category(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(f"<p>{slug}</p>", content_type="text/html")


urlpatterns = [path("products/<str:product_id>/", product, name="product_detail"),
               path("category/<str:slug>/", category, name="category"),
               path("own-sc/", own_sc, name="own_sc")]

application = (asgi_application() if os.environ.get("SHUTDOWN_WRAP") == "1"
               else get_asgi_application())
wsgi_application = get_wsgi_application()
