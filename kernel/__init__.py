"""The shared kernel: the few definitions every app may import.

It imports nothing of the project, so that `credits` and `bookings` (which may
import none of the other apps) can raise the same kind of error as `billing`.
"""
