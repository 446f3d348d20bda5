"""The migration that brings in lots: every balance there was becomes one paid lot."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("credits", "0003_plan")]
AFTER = [("credits", "0004_lots")]


@pytest.mark.django_db(transaction=True)
def test_each_positive_balance_becomes_one_paid_lot():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    User = old.get_model("auth", "User")
    Account = old.get_model("credits", "CreditAccount")
    balances = {"rich": 40, "empty": 0, "in-debt": -5}
    accounts = {
        name: Account.objects.create(user=User.objects.create(username=name), balance=balance)
        for name, balance in balances.items()
    }
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        Lot = new.get_model("credits", "CreditLot")
        lots = list(
            Lot.objects.values_list("account_id", "category", "source", "amount", "remaining")
        )
        assert lots == [(accounts["rich"].pk, "paid", "opening", 40, 40)]
        assert Lot.objects.get().expires_at is None
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
