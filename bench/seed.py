"""Rows the benchmarks need, written straight to the database (Django must be set up).

- `orders_create`: real pending `Order` + `Payment` rows with the unified
  metadata, priced by the purchase type's own plugin, exactly as `order_create`
  leaves them once Stripe has answered the PaymentIntent create (the client then
  confirms it with Stripe.js, and the webhook says it succeeded).
- `background_fill`: history — paid, fulfilled orders with their payments,
  processed events, ledger entries and balances — bulk-loaded with COPY, so the
  scaling runs start from 10k or 100k existing rows in seconds. It keeps every
  invariant (balance = ledger sum), so the checks hold over the whole table.

The rule: rows are made the way the platform would make them (its plugin's
quote, `metadata_build`), never with shapes a test author imagined.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from billing.metadata import metadata_build
from billing.models import Fulfilment, Order, Payment, StripeEvent
from credits.models import CreditAccount, CreditLot, CreditTransaction
from platform_core.auth import api_token_create
from purchasables.registry import registry
from purchasables.types import PurchaseRequest
from tests import stripe_events

PASSWORD = "bench-" + "correct-horse-battery"


@dataclass(frozen=True)
class SeededOrder:
    order_id: int
    user_id: int
    amount: int
    currency: str
    metadata: dict[str, str]
    payment_intent_id: str
    credits: int


def _uid() -> str:
    return uuid.uuid4().hex[:24]


def _payment_for(order: Order) -> Payment:
    """An unsaved PaymentIntent record for a seeded order, as order creation makes it."""
    pi = f"pi_{_uid()}"
    return Payment(
        order=order,
        stripe_payment_intent_id=pi,
        status="requires_payment_method",
        amount=order.amount,
        currency=order.currency,
        client_secret=f"{pi}_secret_{_uid()[:12]}",
    )


def users_create(n: int, *, prefix: str) -> list[int]:
    User = get_user_model()
    tag = _uid()[:8]
    users = [
        User(username=f"{prefix}-{tag}-{i}", email=f"{prefix}{i}@bench.test") for i in range(n)
    ]
    for u in users:
        u.set_unusable_password()
    return [u.pk for u in User.objects.bulk_create(users, batch_size=1000)]


def user_with_token(*, prefix: str, is_staff: bool = False) -> tuple[int, str]:
    """A user who can log in, and a bearer token from the platform's own token service."""
    User = get_user_model()
    username = f"{prefix}-{_uid()[:8]}"
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)
    raw, _ = api_token_create(username=username, password=PASSWORD, name="bench")
    return user.pk, raw


def _quote(user_id: int, credits: int):
    return registry.quote(
        PurchaseRequest(user_id=user_id, purchase_type="credits", credit_amount=credits)
    )


def orders_create(user_ids: list[int], n: int, *, rng: random.Random) -> list[SeededOrder]:
    """`n` pending credit orders spread over `user_ids`, each with its PaymentIntent's row."""
    spec = registry.purchase_type("credits")
    quotes: dict[int, Any] = {}
    rows = []
    for _ in range(n):
        user_id = rng.choice(user_ids)
        credits = rng.choice((10, 50, 100, 250, 1000))
        quote = quotes.get(credits) or quotes.setdefault(credits, _quote(user_id, credits))
        rows.append(
            Order(
                user_id=user_id,
                purchase_type=spec.name,
                order_type=spec.order_type,
                amount=quote.amount,
                currency=quote.currency.lower(),
                description=quote.description[:255],
                data=quote.data,
                payment_type=Order.PaymentType.INTENT,
            )
        )
    out: list[SeededOrder] = []
    with transaction.atomic():
        orders = Order.objects.bulk_create(rows, batch_size=1000)
        payments = []
        for order in orders:
            order.metadata = metadata_build(
                order_id=order.pk,
                user_id=order.user_id,
                order_type=spec.order_type,
                purchase_type=spec.name,
                plugin_metadata=quotes[order.data["credits"]].metadata,
                scheduling_data=None,
            )
            payments.append(_payment_for(order))
            pi = payments[-1].stripe_payment_intent_id
            out.append(
                SeededOrder(
                    order.pk,
                    order.user_id,
                    order.amount,
                    order.currency,
                    order.metadata,
                    pi,
                    int(order.data["credits"]),
                )
            )
        Order.objects.bulk_update(orders, ["metadata"], batch_size=1000)
        Payment.objects.bulk_create(payments, batch_size=1000)
    return out


def orders_create_bookable(
    user_ids: list[int],
    n: int,
    *,
    purchase_type: str,
    service_id: int,
    scheduling_data: dict[str, Any],
    rng: random.Random,
) -> list[SeededOrder]:
    """`n` pending orders of a bookable type, each holding its seats through the plugin's
    reserve hook, as `order_create` leaves them once Stripe has answered."""
    from billing.services.payments import order_info

    spec = registry.purchase_type(purchase_type)
    out: list[SeededOrder] = []
    for _ in range(n):
        user_id = rng.choice(user_ids)
        request = PurchaseRequest(
            user_id=user_id,
            purchase_type=purchase_type,
            service_id=service_id,
            scheduling_data=scheduling_data,
        )
        with transaction.atomic():
            quote = registry.quote(request)
            order = Order.objects.create(
                user_id=user_id,
                purchase_type=spec.name,
                order_type=spec.order_type,
                amount=quote.amount,
                currency=quote.currency.lower(),
                description=quote.description[:255],
                data=quote.data,
                payment_type=Order.PaymentType.INTENT,
            )
            order.metadata = metadata_build(
                order_id=order.pk,
                user_id=user_id,
                order_type=spec.order_type,
                purchase_type=spec.name,
                plugin_metadata=quote.metadata,
                scheduling_data=scheduling_data,
            )
            order.save(update_fields=["metadata"])
            registry.reserve(order_info(order))
            payment = _payment_for(order)
            payment.save()
            pi = payment.stripe_payment_intent_id
        out.append(
            SeededOrder(order.pk, user_id, order.amount, order.currency, order.metadata, pi, 0)
        )
    return out


def payment_event(
    order: SeededOrder,
    *,
    status: str = "succeeded",
    created: int | None = None,
    event_type: str | None = None,
) -> dict[str, Any]:
    """The `payment_intent.*` event Stripe would send for this order's PaymentIntent."""
    pi = stripe_events.payment_intent(
        id=order.payment_intent_id,
        amount=order.amount,
        currency=order.currency,
        status=status,
        metadata=dict(order.metadata),
    )
    kind = (
        event_type
        or {
            "succeeded": "payment_intent.succeeded",
            "requires_payment_method": "payment_intent.payment_failed",
            "canceled": "payment_intent.canceled",
        }[status]
    )
    evt = stripe_events.event(kind, pi)
    if created is not None:
        evt["created"] = created
    return evt


# --- background history, by COPY ------------------------------------------------------


def _columns(model) -> list:
    return [f for f in model._meta.concrete_fields]


def _copy(model, rows: list[dict[str, Any]]) -> None:
    """COPY `rows` (attname → value; missing → the field's default) into `model`'s table."""
    fields = [
        f for f in _columns(model) if not (f.primary_key and rows and f.attname not in rows[0])
    ]
    cols = ", ".join(f'"{f.column}"' for f in fields)
    defaults = {f.attname: f.get_default() for f in fields}
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor
        with raw.copy(f'COPY "{model._meta.db_table}" ({cols}) FROM STDIN') as copy:
            for row in rows:
                values = []
                for f in fields:
                    v = row[f.attname] if f.attname in row else defaults[f.attname]
                    if f.attname in json_fields and v is not None:
                        v = json.dumps(v)
                    values.append(v)
                copy.write_row(values)


def _ids(model, n: int) -> list[int]:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id')) "  # noqa: S608
            "FROM generate_series(1, %s)",
            [n],
        )
        return [r[0] for r in cursor.fetchall()]


def background_fill(n: int, *, users: int = 500, rng: random.Random) -> float:
    """Add `n` paid, fulfilled credit orders of history (with everything they leave behind).

    Answers the seconds it took.
    """
    t0 = time.perf_counter()
    if n <= 0:
        return 0.0
    user_ids = users_create(users, prefix="history")
    spec = registry.purchase_type("credits")
    now = datetime.now(tz=UTC)
    accounts = {
        a.user_id: a.pk
        for a in CreditAccount.objects.bulk_create([CreditAccount(user_id=u) for u in user_ids])
    }
    order_ids = _ids(Order, n)
    payment_ids = _ids(Payment, n)
    entry_ids = _ids(CreditTransaction, n)
    quotes: dict[int, Any] = {}
    balances: dict[int, int] = {}
    template = payment_event(
        SeededOrder(0, 0, 100, "usd", {}, "pi_template", 10), created=int(now.timestamp())
    )
    orders, payments, fulfilments, events, entries, lots = [], [], [], [], [], []
    for i in range(n):
        user_id = rng.choice(user_ids)
        credits = rng.choice((10, 50, 100, 250, 1000))
        quote = quotes.get(credits) or quotes.setdefault(credits, _quote(user_id, credits))
        when = now - timedelta(seconds=rng.randint(60, 90 * 86400))
        order_id = order_ids[i]
        metadata = metadata_build(
            order_id=order_id,
            user_id=user_id,
            order_type=spec.order_type,
            purchase_type=spec.name,
            plugin_metadata=quote.metadata,
            scheduling_data=None,
        )
        pi, charge = f"pi_{_uid()}", f"ch_{_uid()}"
        orders.append({
            "id": order_id, "user_id": user_id, "purchase_type": spec.name,
            "order_type": spec.order_type, "status": Order.Status.PAID,
            "amount": quote.amount, "currency": quote.currency, "description": quote.description,
            "payment_type": "intent", "metadata": metadata, "data": quote.data,
            "created_at": when, "updated_at": when, "paid_at": when,
        })  # fmt: skip
        payments.append({
            "id": payment_ids[i], "order_id": order_id, "stripe_payment_intent_id": pi,
            "status": "succeeded", "amount": quote.amount, "currency": quote.currency,
            "amount_received": quote.amount, "stripe_charge_id": charge,
            "client_secret": f"{pi}_secret_x", "stripe_event_at": int(when.timestamp()),
            "created_at": when, "updated_at": when,
        })  # fmt: skip
        balances[user_id] = balances.get(user_id, 0) + credits
        entries.append({
            "id": entry_ids[i], "account_id": accounts[user_id], "amount": credits,
            "kind": "purchase", "reference": f"order-{order_id}",
            "balance_after": balances[user_id], "memo": f"Order {order_id}", "created_at": when,
        })  # fmt: skip
        # A purchase is a paid lot of its own, as the credit-pack plugin grants it.
        lots.append({
            "account_id": accounts[user_id], "entry_id": entry_ids[i], "source": "purchase",
            "source_order_id": order_id, "category": "paid", "amount": credits,
            "remaining": credits, "cost_basis": quote.amount, "currency": quote.currency,
            "created_at": when,
        })  # fmt: skip
        fulfilments.append({
            "order_id": order_id, "created_at": when,
            "result": {"ledger_entry_id": entry_ids[i], "credits": credits},
        })  # fmt: skip
        payload = dict(template)
        payload["id"] = f"evt_{_uid()}"
        obj = dict(template["data"]["object"])
        obj.update(
            id=pi,
            amount=quote.amount,
            amount_received=quote.amount,
            latest_charge=charge,
            metadata=metadata,
            client_secret=f"{pi}_secret_x",
        )
        payload["data"] = {"object": obj}
        payload["created"] = int(when.timestamp())
        events.append({
            "stripe_id": payload["id"], "type": payload["type"],
            "api_version": payload["api_version"], "object_id": pi, "livemode": False,
            "stripe_created": when, "payload": payload, "status": "processed", "attempts": 1,
            "last_error": "order is now paid", "next_attempt_at": when, "received_at": when,
            "processed_at": when,
        })  # fmt: skip
    with transaction.atomic():
        _copy(Order, orders)
        _copy(Payment, payments)
        _copy(CreditTransaction, entries)
        _copy(CreditLot, lots)
        _copy(Fulfilment, fulfilments)
        _copy(StripeEvent, events)
        for user_id, balance in balances.items():
            CreditAccount.objects.filter(user_id=user_id).update(balance=balance)
    # Settle the load before anything is measured on it: without this, autovacuum (which
    # PostgreSQL starts after many inserts) and the checkpoint that writes the loaded
    # pages ran during the next measured row (one ingest at 100k rows: p99 360 ms, -16%).
    with connection.cursor() as cursor:
        for model in (
            Order, Payment, CreditTransaction, CreditLot, Fulfilment, StripeEvent, CreditAccount,
        ):  # fmt: skip
            cursor.execute(f'VACUUM (ANALYZE) "{model._meta.db_table}"')
        with contextlib.suppress(DatabaseError):  # needs a superuser or pg_checkpoint
            cursor.execute("CHECKPOINT")
    return time.perf_counter() - t0
