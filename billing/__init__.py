"""Orders, payments, webhook intake and processing, and the Stripe gateway."""
