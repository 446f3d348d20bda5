"""The reference web client: a static single-page app served at `/`.

The rule: the client speaks only the public `/api/v1/`, like any team's own
frontend would; the one thing Django adds is the page that loads it, with the
publishable Stripe key and where Stripe.js comes from. Never a secret.
"""
