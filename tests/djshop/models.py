"""The shop's models (see the package docstring)."""

from __future__ import annotations

import uuid

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    class Meta:
        app_label = "djshop"


class Product(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    upc = models.CharField(max_length=64, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    price_currency = models.CharField(max_length=12, default="EUR")
    num_in_stock = models.PositiveIntegerField(default=0)
    categories = models.ManyToManyField(Category, related_name="products")

    class Meta:
        app_label = "djshop"

    def get_absolute_url(self) -> str:
        return f"/shop/products/{self.slug}/"


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32, unique=True)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=12, default="EUR")
    status = models.CharField(max_length=32, default="Pending")
    email = models.EmailField()

    class Meta:
        app_label = "djshop"


class Line(models.Model):
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    title = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField(default=1)
    unit_price_incl_tax = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        app_label = "djshop"


class Basket(models.Model):
    """A basket kept in the database and put on ``request.basket`` by a middleware, as
    django-oscar's ``BasketMiddleware`` does."""

    owner_key = models.CharField(max_length=64, unique=True)

    class Meta:
        app_label = "djshop"


class BasketLine(models.Model):
    basket = models.ForeignKey(Basket, related_name="lines", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)
    price_incl_tax = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        app_label = "djshop"


class TotallessOrder(models.Model):
    """An order with no total column: it sums its items in ``get_total_cost()``, as the
    Django shops built after "Django by Example" do (ikeman950/tonygram-shop,
    ArinaZlatko/lab-9)."""

    customer_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True, null=True)

    class Meta:
        app_label = "djshop"

    def get_total_cost(self):  # type: ignore[no-untyped-def]
        return sum(item.get_cost() for item in self.items.all())


class TotallessOrderItem(models.Model):
    order = models.ForeignKey(TotallessOrder, related_name="items", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        app_label = "djshop"

    def get_cost(self):  # type: ignore[no-untyped-def]
        return self.price * self.quantity
