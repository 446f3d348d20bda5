"""The development stack: what `make run` and `make test` start on a bare machine.

Development and test only; the product never imports it. Production is given its
database and its Stripe through the environment.
"""
