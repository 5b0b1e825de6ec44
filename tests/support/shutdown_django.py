"""A Django shop served over ASGI by a real uvicorn in the shutdown tests.  cdptrack is
configured from the ``CDPTRACK_*`` environment; ``SHUTDOWN_WRAP=1`` serves it through
:func:`cdptrack.integrations.django.asgi_application` (a lifespan), otherwise as Django's
bare ASGI handler (no lifespan: the signal and server hooks must drain the tracker)."""

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
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from cdptrack.integrations.django import asgi_application  # noqa: E402


def product(request: HttpRequest, product_id: str) -> HttpResponse:
    return HttpResponse(f"<p>{product_id}</p>", content_type="text/html")


urlpatterns = [path("products/<str:product_id>/", product, name="product_detail")]

application = (asgi_application() if os.environ.get("SHUTDOWN_WRAP") == "1"
               else get_asgi_application())
