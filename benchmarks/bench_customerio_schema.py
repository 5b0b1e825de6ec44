"""What checking Customer.io messages against spec 002's schema costs per event.

Renders the same events for Customer.io with the check (as shipped) and without it
(``first_problem`` replaced by a no-op), in a loop on one thread, and reports
microseconds per event: a product view, a 20-product category view, an order with 3
lines.  Also the cost of one full jsonschema validation (what a new properties shape
costs once, and what the check would cost on every event without its shape cache).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_customerio_schema.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cdptrack.config import Config
from cdptrack.destinations import customerio, customerio_schema
from cdptrack.events import Event

CONFIG = Config(customerio_api_key="cio-key")
SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


def product(i: int) -> dict[str, Any]:
    return {"product_id": str(1000 + i), "name": f"Boot {i}", "price": 59.9 + i,
            "category": "Boots", "url": f"https://shop.example/p/{i}", "position": i + 1}


EVENTS = {
    "Product Viewed": Event.from_dict({
        "type": "track", "event": "Product Viewed", "visitor": {"sc": SC},
        "properties": {**product(1), "currency": "EUR", "in_stock": True}}),
    "Product List Viewed (20)": Event.from_dict({
        "type": "track", "event": "Product List Viewed", "visitor": {"sc": SC},
        "properties": {"list_id": "boots", "category": "Boots",
                       "products": [product(i) for i in range(20)]}}),
    "Order Completed (3 lines)": Event.from_dict({
        "type": "track", "event": "Order Completed",
        "visitor": {"sc": SC, "user_id": "u-17", "email": "jane@example.com"},
        "properties": {"order_id": "100001", "total": 179.7, "revenue": 179.7,
                       "currency": "EUR",
                       "products": [{**product(i), "quantity": 1} for i in range(3)]}}),
}


def per_event_us(event: Event, n: int) -> float:
    render = customerio.render
    start = time.perf_counter()
    for _ in range(n):
        render(event, CONFIG)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    checked = customerio.first_problem
    print(f"{'event':28} {'render, checked':>16} {'unchecked':>10} {'check':>8} "
          f"{'full validation':>16}  (µs per event, median of {args.rounds})")
    for label, event in EVENTS.items():
        with_check, without = [], []
        for _ in range(args.rounds):
            customerio.first_problem = checked
            with_check.append(per_event_us(event, args.n))
            customerio.first_problem = lambda message: None  # type: ignore[assignment]
            without.append(per_event_us(event, args.n))
        customerio.first_problem = checked
        [request] = customerio.render(event, CONFIG)
        start = time.perf_counter()
        for _ in range(200):
            customerio_schema._first_problem(request.json)
        full = (time.perf_counter() - start) / 200 * 1e6
        a, b = statistics.median(with_check), statistics.median(without)
        print(f"{label:28} {a:16.1f} {b:10.1f} {a - b:8.1f} {full:16.1f}")


if __name__ == "__main__":
    main()
