"""``cdptrack routes APP``: every route of a shop, what page cdptrack takes it for, and
what a GET or a POST to it sends, before going live.

``APP`` is found as gunicorn and uvicorn find it: ``module:attribute`` (``shop.app:app``,
a dotted attribute too), or ``module:factory()`` for an app factory, with the current
directory (or ``--app-dir``) first on ``sys.path``.  A Django project is read through its
settings: ``--django-settings mysite.settings``, ``DJANGO_SETTINGS_MODULE``, or an APP
naming its WSGI/ASGI application.  The app is loaded, never served; its cdptrack
installation (the Flask extension, ``setup()``, the middleware's options, Django's
``CDPTRACK`` setting) gives the route rules and the configuration.

Output: a table, or with ``--json`` the document of :func:`cdptrack.route_table.route_table`.
Exit status 0; 2 for a malformed APP, a module or attribute that does not exist, or an
object that is no Flask, Starlette/FastAPI or Django app; 1 when the app's own code
raises while it loads (the error is printed in one line, with where it was raised).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import re
import site
import sys
import sysconfig
import traceback
from typing import Any

HELP = "list the app's routes: page kind, key, and the events each would send"

_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)"
                   r"(?P<call>\(.*\))?$", re.S)


class LoadError(Exception):
    """The app cannot be loaded; ``status`` is the exit status to use."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="module:attribute or module:factory() (as gunicorn/uvicorn)")
    parser.add_argument("--app-dir", default=".",
                        help="directory put first on sys.path (default: the current one)")
    parser.add_argument("--django-settings", metavar="MODULE",
                        help="a Django project's settings module (default: "
                             "DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")


def run(args: argparse.Namespace) -> int:
    try:
        found, label = load_routes(args.app, args.app_dir, args.django_settings)
    except LoadError as error:
        print(f"cdptrack routes: {error}", file=sys.stderr)
        return error.status
    from ..config import Config, ConfigError
    from ..route_table import config_of, route_table

    config = config_of(found)
    if config is None:
        try:
            config = Config.from_env()
        except ConfigError as error:
            print(f"cdptrack routes: configuration error: {error}", file=sys.stderr)
            return 2
    document = route_table(found, config, app=label)
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_table(document))
    return 0


# --- loading the app -----------------------------------------------------------------


def load_routes(spec: str | None, app_dir: str = ".",
                django_settings: str | None = None) -> tuple[Any, str]:
    """The app's :class:`~cdptrack.observe.routes.AppRoutes` and a label for it.
    Raises :class:`LoadError` with a one-line message."""
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    if django_settings or (spec is None and os.environ.get("DJANGO_SETTINGS_MODULE")):
        if django_settings:
            os.environ["DJANGO_SETTINGS_MODULE"] = django_settings
        label = os.environ["DJANGO_SETTINGS_MODULE"]
        _setup_django(label)
        return _adapter("django").app_routes(), label
    if not spec:
        raise LoadError("give APP as module:attribute (or module:factory()), or "
                        "--django-settings for a Django project")
    app = load_app(spec)
    kind = framework_of(app)
    if kind is None:
        raise LoadError(f"{spec} is a {type(app).__name__}, not a Flask, Starlette, "
                        "FastAPI or Django application")
    if kind == "django":
        return _adapter("django").app_routes(), spec
    return _adapter(kind).app_routes(app), spec


def load_app(spec: str) -> Any:
    """The object ``spec`` names (``module:attr``, ``module:obj.attr``,
    ``module:factory()`` or ``module:factory('arg', n=1)`` with literal arguments)."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise LoadError(f"APP {spec!r} is not module:attribute (e.g. shop.app:app, or "
                        "shop:create_app() for a factory)")
    module_name, attr, call = match["module"], match["attr"], match["call"]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name
                                       or module_name.startswith(error.name + ".")):
            raise LoadError(f"no module named {error.name!r} (looked in "
                            f"{sys.path[0]} first; use --app-dir)") from None
        raise LoadError(_failure(f"importing {module_name}", error), 1) from None
    except Exception as error:
        raise LoadError(_failure(f"importing {module_name}", error), 1) from None
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}")
        found = getattr(found, part)
    if call is None:
        return found
    args, kwargs = _literal_call(spec, attr + call)
    if not callable(found):
        raise LoadError(f"{module_name}:{attr} is not callable")
    try:
        return found(*args, **kwargs)
    except Exception as error:
        raise LoadError(_failure(f"calling {module_name}:{attr}{call}", error), 1) from None


def _literal_call(spec: str, text: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        node = ast.parse(text, mode="eval").body
        if not isinstance(node, ast.Call):
            raise ValueError
        return ([ast.literal_eval(a) for a in node.args],
                {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
    except (SyntaxError, ValueError):
        raise LoadError(f"APP {spec!r}: a factory's arguments must be literals") from None


def _failure(what: str, error: BaseException) -> str:
    """One line: what failed, the error, and where: the innermost frame of the app's own
    code (see :func:`app_frame`), else the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    frame = app_frame(frames) or (frames[-1] if frames else None)
    where = f" (at {frame.filename}:{frame.lineno})" if frame is not None else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{what} failed: {type(error).__name__}: {message}{where}"


def _library_dirs() -> tuple[str, ...]:
    """Where the standard library, installed packages and cdptrack itself live."""
    paths = sysconfig.get_paths()
    found = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # cdptrack/
    adapters = importlib.util.find_spec("cdptrack.integrations")  # installed apart
    for location in (adapters.submodule_search_locations or []) if adapters else []:
        found.add(os.path.abspath(location))
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(name):
            found.add(os.path.abspath(paths[name]))
    for path in (*site.getsitepackages(), site.getusersitepackages()):
        found.add(os.path.abspath(path))
    return tuple(path.rstrip(os.sep) + os.sep for path in found)


def app_frame(frames: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame that belongs to the app: not frozen (``<frozen os>``) or
    generated code, not the standard library, an installed package (``site-packages``)
    or cdptrack.  ``None`` when every frame is library code."""
    libraries = _library_dirs()
    for frame in reversed(frames):
        name = frame.filename
        if not name or name.startswith("<"):
            continue
        path = os.path.abspath(name)
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if path.startswith(libraries):
            continue
        return frame
    return None


def framework_of(app: Any) -> str | None:
    """``"flask"``, ``"starlette"`` (FastAPI too), ``"django"`` or ``None``, read from
    the object's classes without importing any framework; ASGI middleware wrapped
    around an app (``.app``) is looked through."""
    inner = app
    for _ in range(32):
        modules = {k.__module__.split(".")[0] for k in type(inner).__mro__}
        if "flask" in modules and hasattr(inner, "url_map"):
            return "flask"
        if modules & {"starlette", "fastapi"} and hasattr(inner, "routes"):
            return "starlette"
        if "django" in modules:
            return "django"
        if not hasattr(inner, "app"):
            return None
        inner = inner.app
    return None


def _setup_django(settings_module: str) -> None:
    try:
        import django  # type: ignore[import-untyped]

        django.setup()
    except ModuleNotFoundError as error:
        if error.name == "django":
            raise
        raise LoadError(f"cannot import the settings {settings_module!r}: {error}") from None
    except Exception as error:
        raise LoadError(_failure(f"loading Django settings {settings_module}", error),
                        1) from None


def _adapter(name: str) -> Any:
    return importlib.import_module(f"cdptrack.integrations.{name}")


# --- the table -------------------------------------------------------------------------


def format_table(document: dict[str, Any]) -> str:
    """The document as text: a line per route and method (method, route, page kind, key,
    where the decision comes from, the events it sends; ``[condition]`` after an event
    that depends on the request), then where each event goes and what the marks mean."""
    rows = [("METHOD", "ROUTE", "KIND", "KEY", "FROM", "SENDS")]
    used: set[str] = set()
    names: list[str] = []
    for route in document["routes"]:
        for method, plan in route["requests"].items():
            if not plan["tracked"]:
                sends = f"nothing ({plan['why']})"
            else:
                parts = []
                for event in plan["events"]:
                    when = event["when"]
                    parts.append(event["event"] + (f" [{when}]" if when else ""))
                    if when:
                        used.add(when)
                    if event["event"] not in names:
                        names.append(event["event"])
                sends = ", ".join(parts) or "-"
            rows.append((method, route["route"], plan["kind"] or "-", plan["key"] or "-",
                         plan["source"], sends))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    count = len(document["routes"])
    pairs = len(rows) - 1
    counted = f"{count} route{'s' if count != 1 else ''}"
    if pairs != count:
        counted += f" ({pairs} method/route pair{'s' if pairs != 1 else ''})"
    lines = [f"{document['framework']} app {document['app'] or ''}".rstrip() + ": " + counted]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
              for r in rows]
    if used:
        lines += ["", "Conditions:"]
        lines += [f"  [{k}] only when {v}" for k, v in document["when"].items() if k in used]
    destinations = list(document["destinations"])
    reach = {e["event"]: e["destinations"] for r in document["routes"]
             for p in r["requests"].values() for e in p["events"]}
    if names:
        lines += ["", "Where each event goes with this configuration:"]
        table = [("EVENT", *destinations)]
        table += [(name, *(reach[name][d] for d in destinations)) for name in names]
        w = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(c.ljust(x) for c, x in zip(r, w, strict=True)).rstrip()
                  for r in table]
        lines += [f"  {k}: {v}" for k, v in document["reach"].items() if k != "sent"]
    if not document["installed"]:
        lines += ["", "Note: cdptrack is not installed on this app."]
    lines += [f"Note: {note}" for note in document["notes"]]
    return "\n".join(lines)
