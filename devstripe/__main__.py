"""`python -m devstripe --port 8420`: serve the development Stripe on loopback."""

from devstripe.server import main

main()
