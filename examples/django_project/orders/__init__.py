"""The orders app: produce an order from a view, consume orders from ``manage.py consume_orders``."""
