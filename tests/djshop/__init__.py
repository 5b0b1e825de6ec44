"""A small Django shop app written the way public Django shops write theirs: UUID
primary keys, ``DecimalField`` money, categories as a many-to-many relation, order lines
as a related manager (field names from tests/shop_data.py)."""
