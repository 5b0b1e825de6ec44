"""Simulated shoppers for ``cdptrack demo``: real HTTP through the example shops.

Each shopper is an ``httpx`` client with its own cookie jar (so its own ``sc`` visitor
cookie and session) walking a whole journey: home, a category, a few products, cart
adds and a removal, a search that finds something and one that does not, a wishlist
add, sign-in, checkout, and a reload of the thank-you page (which must not count the
order twice).  Links are read from the shop's own answers, so the walk follows whatever
catalogue the shop serves.  Two drivers: the Flask storefront (HTML pages and form
POSTs) and the FastAPI shop (a JSON API).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

NO_RESULTS_QUERY = "unicorn socks"


@dataclass
class ShopperRun:
    """What one shopper did, and any answer from the shop that was not a success."""

    number: int
    email: str
    steps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    order_id: str | None = None


class _Walk:
    def __init__(self, client: httpx.Client, run: ShopperRun) -> None:
        self.client = client
        self.run = run

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        label = f"{method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            self.run.errors.append(f"{label}: {type(err).__name__}: {err}")
            return None
        self.run.steps.append(f"{label} -> {response.status_code}")
        if response.status_code >= 400:
            self.run.errors.append(f"{label}: HTTP {response.status_code}")
        return response


def _flask_journey(walk: _Walk, rng: random.Random, sign_in_first: bool) -> None:
    run = walk.run
    home = walk.call("GET", "/")
    categories = re.findall(r'href="/category/([^"/]+)"', home.text if home else "")
    if not categories:
        run.errors.append("GET /: no category links")
        return
    if sign_in_first:
        _flask_sign_in(walk)
    slug = rng.choice(categories)
    page = walk.call("GET", f"/category/{slug}")
    products = re.findall(r'href="/product/([^"/]+)">([^<]+)</a>', page.text if page else "")
    if not products:
        run.errors.append(f"GET /category/{slug}: no product links")
        return
    picked = rng.sample(products, k=min(3, len(products)))
    for pid, _name in picked:
        walk.call("GET", f"/product/{pid}")
    for pid, _name in picked[:2]:
        walk.call("POST", "/cart/add", data={"product_id": pid, "quantity": "1"})
    if len(picked) > 1:
        walk.call("POST", "/cart/remove", data={"product_id": picked[1][0]})
    walk.call("GET", "/search", params={"q": picked[0][1].split()[0]})
    walk.call("GET", "/search", params={"q": NO_RESULTS_QUERY})
    walk.call("POST", f"/wishlist/add/{picked[-1][0]}")
    if not sign_in_first:
        _flask_sign_in(walk)
    walk.call("GET", "/checkout")
    done = walk.call("POST", "/checkout", data={"email": run.email})
    if done is not None and "/checkout/success/" in str(done.url):
        run.order_id = str(done.url).rstrip("/").rsplit("/", 1)[1]
        walk.call("GET", done.url.path)  # reload the thank-you page
    elif done is not None:
        run.errors.append(f"POST /checkout: no thank-you page (ended at {done.url.path})")


def _flask_sign_in(walk: _Walk) -> None:
    walk.call("GET", "/login")
    name = walk.run.email.split("@")[0].replace(".", " ").title()
    walk.call("POST", "/login", data={"email": walk.run.email, "name": name})


def _fastapi_journey(walk: _Walk, rng: random.Random, sign_in_first: bool) -> None:
    run = walk.run
    home = walk.call("GET", "/")
    categories = [c["slug"] for c in _json(home).get("categories", []) if "slug" in c]
    if not categories:
        run.errors.append("GET /: no categories")
        return
    if sign_in_first:
        _fastapi_sign_in(walk)
    slug = rng.choice(categories)
    listing = _json(walk.call("GET", f"/api/categories/{slug}"))
    products = [(p["product_id"], p["name"]) for p in listing.get("products", [])]
    if not products:
        run.errors.append(f"GET /api/categories/{slug}: no products")
        return
    picked = rng.sample(products, k=min(3, len(products)))
    for pid, _name in picked:
        walk.call("GET", f"/api/products/{pid}")
    for pid, _name in picked[:2]:
        walk.call("POST", "/api/cart/items", json={"product_id": pid, "quantity": 1})
    if len(picked) > 1:
        walk.call("DELETE", f"/api/cart/items/{picked[1][0]}")
    walk.call("GET", "/api/search", params={"q": picked[0][1].split()[0]})
    walk.call("GET", "/api/search", params={"q": NO_RESULTS_QUERY})
    walk.call("POST", f"/api/wishlist/add/{picked[-1][0]}")
    if not sign_in_first:
        _fastapi_sign_in(walk)
    done = _json(walk.call("POST", "/api/checkout", json={"email": run.email}))
    url = done.get("confirmation_url")
    if isinstance(url, str):
        run.order_id = str(done.get("order_id"))
        walk.call("GET", url)
        walk.call("GET", url)  # reload the thank-you answer
    else:
        run.errors.append("POST /api/checkout: no confirmation_url")


def _fastapi_sign_in(walk: _Walk) -> None:
    name = walk.run.email.split("@")[0].replace(".", " ").title()
    walk.call("POST", "/api/login", json={"email": walk.run.email, "name": name})


def _json(response: httpx.Response | None) -> dict[str, Any]:
    if response is None or response.status_code >= 400:
        return {}
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


JOURNEYS: dict[str, Callable[[_Walk, random.Random, bool], None]] = {
    "flask": _flask_journey,
    "fastapi": _fastapi_journey,
}


def shop_once(base_url: str, number: int, framework: str = "flask", seed: int = 0,
              timeout: float = 15.0) -> ShopperRun:
    """One shopper's whole journey through the shop at ``base_url``."""
    rng = random.Random(seed * 1_000_003 + number)
    run = ShopperRun(number, f"shopper{number}@example.com")
    headers = {"User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) cdptrack-demo-shopper/{number}",
               "Accept-Language": "en"}
    with httpx.Client(base_url=base_url, headers=headers, follow_redirects=True,
                      timeout=timeout) as client:
        JOURNEYS[framework](_Walk(client, run), rng, number % 2 == 1)
    return run


def run_shoppers(base_url: str, count: int, framework: str = "flask", *, seed: int = 0,
                 concurrency: int = 4) -> list[ShopperRun]:
    """``count`` shoppers, ``concurrency`` at a time, each with its own cookies."""
    if framework not in JOURNEYS:
        raise ValueError(f"unknown shop framework {framework!r}")
    if count <= 0:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, count)),
                            thread_name_prefix="cdptrack-shopper") as pool:
        futures = [pool.submit(shop_once, base_url, n, framework, seed)
                   for n in range(1, count + 1)]
        return [f.result() for f in futures]
