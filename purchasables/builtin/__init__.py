"""Built-in purchase types: ordinary plugins, registered like third-party ones."""

from purchasables.builtin import bookable, credit_ledger, credit_pack, subscription

BUILTIN_PLUGINS = [
    ("tollgate.credits", credit_pack),
    ("tollgate.credit_ledger", credit_ledger),
    ("tollgate.subscriptions", subscription),
    *bookable.PLUGINS,
]
