"""Bookable services, scheduled sessions with capacity, and bookings."""
