"""The booking services (writes), split by subject: plans, seats, holds, bookings.

Import from the submodule that owns the action (`bookings.services.holds`).
"""
