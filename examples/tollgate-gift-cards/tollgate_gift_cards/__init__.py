"""Gift cards for Tollgate: a purchase type written outside the project.

A buyer pays an amount within the configured bounds; once the payment clears,
Tollgate's billing calls `plugin.tollgate_fulfil`, which issues one `GiftCard`
with a unique code. A full refund voids an unredeemed card; a partial one lowers
its value. The package uses only Tollgate's plugin API (`purchasables`,
`kernel`) and Django, never `billing`.
"""
