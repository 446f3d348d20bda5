"""Measurement harness: `make bench` (the money path's figures) and `make storm` (the
money invariants under faults).

`python -m bench` and `python -m bench.storm` start a real stack — PostgreSQL (a
database of their own), gunicorn, django-q2 clusters, localstripe behind a timing
proxy — drive it over HTTP, check the database, and stop everything they started.

The rule: this package measures and checks the platform from outside; it never
changes the platform's code or tunes it, and every figure it prints is backed by
a count taken from the database, the client's clock or /proc.
"""
