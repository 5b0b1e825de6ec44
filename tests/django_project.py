"""The one Django settings module of the test suite (Django's settings are configured
once per process, here on import): the adapter tests and the ORM shop tests share it.

The URLconf is the adapter tests' module; the ORM shop tests switch it with
``override_settings(ROOT_URLCONF=...)``.  The database is SQLite in memory (one
connection per thread, as Django makes them); the ``djshop`` app holds the ORM shop's
models.
"""

from __future__ import annotations

import django
from django.conf import settings

TEMPLATES = {
    "product.html": "<h1>{{ product.name }}</h1>",
    "category.html": "<h1>{{ category.name }}</h1>",
    "search.html": "<p>{{ results|length }} found</p>",
    "thanks.html": "<p>Thank you for order {{ order.order_id }}</p>",
    "shop/product.html": "<h1>{{ product.title }}</h1><p>{{ product.price }}</p>",
    "shop/category.html": "<h1>{{ category.name }}</h1>"
                          "{% for p in products %}<p>{{ p.title }}</p>{% endfor %}",
    "shop/thanks.html": "<p>Thank you for order {{ order.number }}</p>",
    "shop/home.html": "{% for p in products %}<p>{{ p.title }}</p>{% endfor %}",
    "shop/success.html": "<p>Order {{ order.id }}: {{ order.get_total_cost }}</p>",
}


def configure() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="cdptrack-django-tests",
        ALLOWED_HOSTS=["testserver", "shop.example"],
        ROOT_URLCONF="test_django_adapter",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "django.contrib.sessions", "djshop"],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "cdptrack.integrations.django.CDPTrackMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        AUTHENTICATION_BACKENDS=["test_django_adapter.MemoryBackend"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", TEMPLATES)]},
        }],
        STATIC_URL="/assets-v2/",
        USE_TZ=True,
        CDPTRACK={},
    )
    django.setup()


configure()
