"""``manage.py check`` on a real Django project reports a misspelt ``CDPTRACK`` key.

The project (``manage.py``, a settings module, a URLconf) is written to a temporary
directory and run in its own process, as a shop would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parent.parent

MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

SETTINGS = """\
SECRET_KEY = "cdptrack-check-test"
DEBUG = False
ALLOWED_HOSTS = ["shop.example"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "cdptrack.integrations.django.CDPTrackConfig",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cdptrack.integrations.django.CDPTrackMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES = {{}}
CDPTRACK = {cdptrack}
"""


def manage_check(tmp_path: Path, cdptrack: str) -> subprocess.CompletedProcess[str]:
    package = tmp_path / "shop"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "urls.py").write_text("urlpatterns = []\n")
    (package / "settings.py").write_text(SETTINGS.format(cdptrack=cdptrack))
    (tmp_path / "manage.py").write_text(MANAGE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDPTRACK_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_misspelt_key_fails_the_check_with_did_you_mean(tmp_path: Path) -> None:
    done = manage_check(tmp_path, '{"yespo_site_idd": "8A412DC", "curency": "EUR"}')
    assert done.returncode != 0
    assert "settings.CDPTRACK['yespo_site_idd'] is not a cdptrack option" in done.stderr
    assert "did you mean 'yespo_site_id'?" in done.stderr
    assert "did you mean 'currency'?" in done.stderr
    assert "cdptrack.E002" in done.stderr


def test_a_value_that_cannot_work_fails_the_check(tmp_path: Path) -> None:
    done = manage_check(tmp_path, '{"customerio_api_key": "cio-SECRET-4", '
                                  '"customerio_region": "mars"}')
    assert done.returncode != 0
    assert "cdptrack.E003" in done.stderr and "mars" in done.stderr
    assert "cio-SECRET-4" not in done.stderr + done.stdout


def test_good_settings_pass_the_check(tmp_path: Path) -> None:
    done = manage_check(tmp_path, '{"yespo_site_id": "8A412DC", "currency": "EUR"}')
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
