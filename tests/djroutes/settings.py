"""Settings of the ``cdptrack routes`` test project (never served)."""

SECRET_KEY = "cdptrack-routes-tests"
ROOT_URLCONF = "djroutes.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                  "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cdptrack.integrations.django.CDPTrackMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_I18N = True
LANGUAGE_CODE = "en-gb"
LANGUAGES = [("en-gb", "English"), ("de", "German")]
STATIC_URL = "/assets/"
CDPTRACK = {
    "customerio_api_key": "routes-test-key",
    "route_rules": {"/en-gb/shop/deals/<slug:deal_slug>/": "category:slug"},
}
