"""The development Stripe: localstripe, taught what it lacks of Stripe's pinned API.

A development and test tool only. The product never imports this package; it
talks to it over HTTP, exactly as to Stripe (`STRIPE_API_BASE`). Where it
cannot do what Stripe does, this package is what changes, never the product.

Each feature module exposes `install(app)`, which adds its routes and
middlewares to localstripe's aiohttp application before it starts.
"""
