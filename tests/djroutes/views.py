"""Views of the ``cdptrack routes`` test project."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import View

from cdptrack import track


def page(request: HttpRequest, **kwargs: object) -> HttpResponse:
    return HttpResponse("<p>page</p>")


@track.product_page(key="code")
class ItemView(View):
    def get(self, request: HttpRequest, code: str) -> HttpResponse:
        return HttpResponse(f"<h1>{code}</h1>")


class BasketView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("<p>basket</p>")

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("<p>basket</p>")
