"""Billing's writes, split by subject: orders, payments, events."""
