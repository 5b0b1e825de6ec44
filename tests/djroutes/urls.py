"""The URLconf of the ``cdptrack routes`` test project: Oscar-like catalogue routes
under a language prefix, an ``include()`` inside an ``include()``, and ``re_path``."""

from __future__ import annotations

from django.conf.urls.i18n import i18n_patterns
from django.urls import include, path, re_path

from . import views

catalogue = [
    path("<slug:product_slug>_<int:pk>/", views.page, name="detail"),
    path("category/<slug:category_slug>_<int:pk>/", views.page, name="category"),
]
shop = [
    path("catalogue/", include(catalogue)),
    path("deals/<slug:slug>/", views.page, name="deal"),
    path("basket/", views.BasketView.as_view(), name="basket"),
    re_path(r"^item/(?P<code>[A-Z0-9]+)/$", views.ItemView.as_view(), name="item"),
]
urlpatterns = [
    path("healthz", views.page),
    *i18n_patterns(path("shop/", include(shop))),
]
