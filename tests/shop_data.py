"""Field names and value shapes of real open-source shops, used as test data.

Recorded from the shops' public model definitions (names and types only):

- django-oscar/django-oscar (``src/oscar/apps/catalogue``, ``partner``, ``order``):
  products have ``upc``, ``title``, ``slug``, ``categories`` (many-to-many), stock
  records with ``partner_sku``, ``price`` (``DecimalField(max_digits=12,
  decimal_places=2)``), ``price_currency`` and ``num_in_stock``; orders have ``number``,
  ``total_incl_tax`` (Decimal), ``currency`` and a free-text ``status`` whose sandbox
  values are "Pending", "Being processed", "Complete", "Cancelled"; order lines have
  ``partner_sku``, ``title``, ``upc``, ``quantity``, ``unit_price_incl_tax``.
- saleor/saleor (``saleor/product/models.py``, ``saleor/order/models.py``): products
  have ``name``, ``slug``, ``category`` (a foreign key), ``product_type``; orders have a
  UUID primary key ``id``, ``status`` in "draft", "unconfirmed", "unfulfilled",
  "partially fulfilled", "fulfilled", "canceled", "expired", ``total_gross_amount``
  (Decimal) and ``currency``; order lines have ``product_name``, ``product_sku``,
  ``quantity``, ``unit_price_gross_amount``.
- ikeman950/tonygram-shop (Django; ``core/views.py``, ``core/models.py``): one home
  view lists the products and filters them by query string, ``/?category=<slug>`` and
  ``/?q=<text>``, with the products in the ``render()`` context as ``products``; its
  ``Order`` has no total column but a ``get_total_cost()`` method summing its ``items``
  (``price`` Decimal, ``quantity``), and the thank-you view renders it as ``order``.
- thesillypeanut-zz/online-marketplace-api (Flask, ``src/models.py``, ``src/routes``):
  UUID primary keys; ``Product`` (``title``, ``price`` float, ``inventory_count``);
  ``CartItem`` rows (``id``, ``cart_id``, ``product_id``, ``quantity``) created by
  ``POST /api/v1/cart-items/`` (answers the created line, 201), changed by ``PUT
  .../cart-items/<cart_item_id>`` (answers the line) and removed by ``DELETE`` (204, empty);
  ``POST /api/v1/orders/`` with a ``cart_id`` answers ``{"id", "cart_id", "date_ordered",
  "subtotal"}`` (no lines, no total); sign-in answers a token read from
  ``x-access-token``.
- Oluwaseun241/BookNexus (FastAPI, ``app/models.py``, ``routers``): ``Book`` rows with a
  string UUID ``id``, ``title``, ``categories``, ``amount`` (Numeric); ``GET
  /book/{category}`` lists a category; ``POST /cart`` answers the new ``Cart`` row
  (``id``, ``quantity``, ``book_id``, ``user_id``), ``DELETE /cart/{id}`` answers 202
  with a message; ``POST /cart/checkout`` answers the ``Order`` row (``id``,
  ``cart_id``, payment fields; no lines, no total); ``POST /login`` answers a bearer
  token (``OAuth2PasswordBearer``).
"""

from __future__ import annotations

from decimal import Decimal

# Oscar's sandbox order statuses and Saleor's OrderStatus values, with what Yespo's
# v1/event order status (INITIALIZED, IN_PROGRESS, DELIVERED, CANCELLED) they mean.
ORDER_STATUSES = {
    "Pending": "INITIALIZED", "Being processed": "IN_PROGRESS", "Complete": "DELIVERED",
    "Cancelled": "CANCELLED", "draft": "INITIALIZED", "unconfirmed": "INITIALIZED",
    "unfulfilled": "INITIALIZED", "partially fulfilled": "IN_PROGRESS",
    "fulfilled": "IN_PROGRESS", "canceled": "CANCELLED", "expired": "CANCELLED",
}

# One Oscar-style product and one Saleor-style order line, as the ORM returns them.
OSCAR_PRODUCT = {"upc": "9780141187761", "title": "Nineteen Eighty-Four",
                 "slug": "nineteen-eighty-four_1", "price": Decimal("9.99"),
                 "price_currency": "GBP", "num_in_stock": 12}
SALEOR_ORDER_LINE = {"product_name": "Apple Juice", "product_sku": "APPLE-JUICE-1L",
                     "quantity": 2, "unit_price_gross_amount": Decimal("3.50")}
