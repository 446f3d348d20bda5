"""Mutants that cannot change what the program does, or are not Python at all, marked
skipped before they run.

Not Python: the mutated module does not compile (`def f(*, x)` made `def f(-, x)`):
any import fails, so counting it killed would say nothing about the tests.

Equivalent: the mutants in `KNOWN` (a survivor someone read and found cannot
change what the program does, with the reason), and two kinds decided from the
source alone:
- a change inside an annotation, in a module with `from __future__ import
  annotations`: annotations there are strings nobody evaluates (`int | None` made
  `int + None` is still never run);
- the bare `*` that makes the parameters after it keyword-only, made `/` (or
  another operator): every call the program makes names those arguments, so each
  one still binds the same values.

The rule: a mutant is skipped only when its mutated source does not compile, or
its whole span lies in such a place; it is reported apart, never counted killed.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import cosmic_ray.plugins
from cosmic_ray.mutating import mutate_code
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

Span = tuple[tuple[int, int], tuple[int, int]]

# Survivors read and found equivalent: (module, the line as written, the line as the
# mutant writes it, why). Matched on the lines' text (spaces aside), not on numbers,
# so they follow the code as it moves; a line that changes is examined again.
KNOWN: list[tuple[str, str, str, str]] = [
    *[
        (
            "bookings/services/plans.py",
            "end = start + timedelta(minutes=service.duration_minutes or 0)",
            f"end = start + timedelta(minutes=service.duration_minutes or {n})",
            "only 1-on-1 services have slots, and a check constraint keeps their duration "
            "above 0: the `or` default is never taken",
        )
        for n in (1, -1)
    ],
    (
        "bookings/services/seats.py",
        "@dataclass(frozen=True)",
        "@dataclass(frozen=False)",
        "Slot and SeatNeeds are never hashed nor assigned to after they are made",
    ),
    *[
        (
            path,
            f'list({rows}.values_list("pk", flat=True))',
            f'list({rows}.values_list("pk", flat=False))',
            "the rows are read only to take their locks; the values are thrown away",
        )
        for path, rows in (
            ("bookings/services/seats.py", 'sessions.order_by("pk")'),
            ("bookings/services/seats.py", 'services.order_by("pk")'),
            ("bookings/services/holds.py", "users"),
        )
    ],
    *[
        (
            "billing/services/events.py",
            "DRAIN_TIME_BUDGET = timedelta(seconds=20)",
            f"DRAIN_TIME_BUDGET = timedelta(seconds={n})",
            "a tuning figure, not a rule: a second more or less keeps a drain and one slow "
            "event inside the task's timeout, as 20 s does",
        )
        for n in (19, 21)
    ],
    *[
        (
            "billing/services/refunds.py",
            line.format(500),
            line.format(n),
            "a refund call's gateway error has one of four fixed messages ('The payment "
            "provider failed to refund the payment / list the refunds.' and whether to try "
            "again), all under 100 characters: cut at 499, 500 or 501 each is kept whole",
        )
        for line in (
            "Refund.objects.filter(pk=refund.pk).update(failure_reason=exc.message[:{}])",
            "status=S.FAILED, failure_reason=exc.message[:{}]",
        )
        for n in (499, 501)
    ],
    *[
        (
            "billing/services/events.py",
            "return 0",
            f"return {n}",
            "`_release` answers how many events it gave back, and no caller reads the answer",
        )
        for n in (1, -1)
    ],
    (
        "billing/services/subscriptions.py",
        "and not Subscription.objects.filter(stripe_subscription_id=made[0].id).exists()",
        "and not Subscription.objects.filter(stripe_subscription_id=made[-1].id).exists()",
        "the condition's first test is `len(made) == 1`: the first and the last are the same",
    ),
    (
        "billing/services/subscriptions.py",
        'ended["stripe_subscription_id"] = made[0].id  # for staff: what was cancelled',
        'ended["stripe_subscription_id"] = made[-1].id  # for staff: what was cancelled',
        "only reached when `len(made) == 1`: the first and the last are the same",
    ),
    (
        "billing/services/reconcile.py",
        "if len(batch) == 100:",
        "if not len(batch) == 100:",
        "a batch of one instead of a hundred: every event is still looked up and stored "
        "once; only the number of lookups changes",
    ),
    (
        "bookings/services/plans.py",
        "if parsed.tzinfo is None or parsed.utcoffset() is None:",
        "if parsed.tzinfo is None and parsed.utcoffset() is None:",
        "`datetime.fromisoformat` gives either no tzinfo (and so no offset) or a fixed "
        "offset: the two tests never disagree on what it parses",
    ),
    (
        "bookings/services/plans.py",
        "return upcoming[0]",
        "return upcoming[-1]",
        "exactly one upcoming session is left here: first and last are the same",
    ),
    (
        "bookings/services/plans.py",
        "if service.kind == Kind.WORKSHOP:",
        "if service.kind >= Kind.WORKSHOP:",
        "no kind's value sorts after 'workshop', so only a workshop is >= it",
    ),
    (
        "bookings/services/plans.py",
        "if len(upcoming) > 1:",
        "if len(upcoming) != 1:",
        "the empty list was refused just above, so the length is 1 or 2 here",
    ),
    (
        "bookings/services/plans.py",
        "upcoming = list(ServiceSession.objects.filter(service=service, start__gt=now)[:2])",
        "upcoming = list(ServiceSession.objects.filter(service=service, start__gt=now)[:3])",
        "only whether there is more than one upcoming session is asked: 3 rows or 2 "
        "answer it alike",
    ),
    *[
        (
            "billing/services/reconcile.py",
            "if len(batch) == 100:",
            f"if len(batch) {op} {n}:",
            "a batch of another size (one event, or all of them at the end): every event "
            "is still looked up and stored once; only the number of lookups changes",
        )
        for op, n in (
            ("!=", 100),
            ("<", 100),
            ("<=", 100),
            (">", 100),
            (">=", 100),
            ("==", 99),
            ("==", 101),
        )
    ],
    (
        "billing/services/reconcile.py",
        '"stripe_id", flat=True',
        '"stripe_id", flat=False',
        "the set only spares calls: an event it then fails to recognise goes to "
        "`event_store`, which stores nothing for an id it has and answers 0 new",
    ),
    *[
        (
            path,
            "Order.objects.filter(pk=order.pk).update(gateway_error=exc.message[:500])",
            f"Order.objects.filter(pk=order.pk).update(gateway_error=exc.message[:{n}])",
            "the message is a PaymentGatewayError's, which the gateway builds as one of its "
            "own sentences of about a hundred characters: no cut at 499, 500 or 501 changes it",
        )
        for path in ("billing/services/orders.py", "billing/services/checkout.py")
        for n in (499, 501)
    ],
    *[
        (
            path,
            "@dataclass(frozen=True)",
            "@dataclass(frozen=False)",
            "the results (OrderCreateResult, OrderPayResult, ReconcileReport) are never "
            "hashed nor assigned to after they are made",
        )
        for path in ("billing/services/orders.py", "billing/services/reconcile.py")
    ],
    (
        "billing/services/orders.py",
        "apply_credits: bool = False,",
        "apply_credits: bool = True,",
        "the orders API, the one caller, always passes `apply_credits`; the default is never used",
    ),
    (
        "billing/services/orders.py",
        "source = charge_source_for("
        "user_id=user_id, payment_method_id=payment_method_id, save=False)",
        "source = charge_source_for("
        "user_id=user_id, payment_method_id=payment_method_id, save=True)",
        "`order_pay` never calls `charge_source_ready`, the only reader of a source's `save`",
    ),
    (
        "billing/services/orders.py",
        'if session.status == "complete":',
        'if session.status <= "complete":',
        "a Checkout Session is open, complete or expired, and only 'complete' sorts <= 'complete'",
    ),
    (
        "billing/services/orders.py",
        'if current.status != "canceled":',
        'if current.status > "canceled":',
        "every other PaymentIntent status (processing, requires_..., succeeded) sorts "
        "after 'canceled'",
    ),
    (
        "billing/services/orders.py",
        "if order.status != Order.Status.CANCELED:",
        "if order.status > Order.Status.CANCELED:",
        "every other order status (failed, paid, partially_refunded, pending, processing, "
        "refunded, requires_action) sorts after 'canceled'",
    ),
    *[
        (
            "billing/services/credit_payments.py",
            'order.credits_reference = f"order-{order.pk}-{secrets.token_hex(8)}"',
            f'order.credits_reference = f"order-{{order.pk}}-{{secrets.token_hex({n})}}"',
            "the order's id already makes the reference its own; seven or nine random bytes "
            "after it (within the order's 64 characters) do what eight do",
        )
        for n in (7, 9)
    ],
    *[
        (
            "billing/services/credit_payments.py",
            "if taken <= 0:",
            f"if taken {mutant}:",
            "a partial take answers 0..price, and with 0 taken `card_rest` is the whole "
            "amount, so `rest >= order.amount` refuses it just below all the same",
        )
        for mutant in ("< 0", "== 0", "<= -1")
    ],
    (
        "billing/services/credit_payments.py",
        "if rest >= order.amount:",
        "if rest is order.amount:",
        "`card_rest` answers `min(amount, ...)`, given the order's own `amount` object, and "
        "`min` answers its first argument on a tie: the rest is that very object exactly "
        "when it equals the amount (it is never more)",
    ),
    (
        "billing/services/credit_payments.py",
        "if rest >= order.amount:",
        "if rest == order.amount:",
        "`card_rest` answers at most `amount` (its `min`): >= and == agree",
    ),
    (
        "billing/services/credit_payments.py",
        "if taken >= price:",
        "if taken == price:",
        "a partial take answers at most the credits asked for (the ledger hook's "
        "contract): taken never exceeds the price",
    ),
    *[
        (
            "billing/services/credit_payments.py",
            "if taken != price:",
            f"if taken {op} price:",
            "only a take of exactly the price reaches here (a whole take answers the price "
            "or refuses; a partial one passed `taken >= price` and never exceeds it)",
        )
        for op in ("<", ">")
    ],
    *[
        (
            "billing/services/credit_refunds.py",
            "order.credits - credits_before,",
            f"order.credits {op} credits_before,",
            "the buyer cancels only a paid order paid with credits, and each credits refund of "
            "such an order is applied in the transaction that stores it, which moves the order "
            "on from paid for good: nothing has come back yet, credits_before is 0 (and x + 0, "
            "x << 0, x >> 0, x | 0, x ^ 0 are all x)",
        )
        for op in ("+", "<<", ">>", "|", "^")
    ],
    *[
        (
            "billing/services/credit_refunds.py",
            'return sums["c"] or 0, sums["v"] or 0',
            mutant,
            "every caller of `_credits_back_so_far` takes the credits and throws the value away",
        )
        for mutant in (
            'return sums["c"] or 0, sums["v"] and 0',
            'return sums["c"] or 0, sums["v"] or 1',
            'return sums["c"] or 0, sums["v"] or -1',
        )
    ],
    (
        "billing/services/credit_refunds.py",
        "card_part < 0",
        "card_part < -1",
        "the card part is never negative: 0, an amount `to_minor` took (it refuses zero and "
        "negatives), or a floor of a product of non-negative amounts",
    ),
    (
        "billing/services/credit_refunds.py",
        "if order.order_type == Order.OrderType.CREDIT:",
        "if order.order_type <= Order.OrderType.CREDIT:",
        "'credit' sorts first of the order types (credit, direct, subscription), so only a "
        "credit order is <= it",
    ),
    (
        "billing/services/disputes.py",
        "if order.status == Order.Status.CANCELED:",
        "if order.status <= Order.Status.CANCELED:",
        "'canceled' sorts before every other order status, so only a canceled order is <= it",
    ),
    (
        "billing/services/disputes.py",
        'state = "lost" if dispute.outcome == Outcome.LOST else "won"',
        'state = "lost" if dispute.outcome is Outcome.LOST else "won"',
        "the outcome was set just above from `_outcome`, which answers the `Outcome` members "
        "themselves, so `is` answers as `==`",
    ),
    (
        "billing/services/disputes.py",
        "if dispute.outcome == Outcome.LOST and dispute.reversed_at is None:",
        "if dispute.outcome is Outcome.LOST and dispute.reversed_at is None:",
        "the outcome was set just above from `_outcome`, which answers the `Outcome` members "
        "themselves, so `is` answers as `==`",
    ),
    (
        "billing/services/disputes.py",
        '"appeal_under_review": 5,',
        '"appeal_under_review": 6,',
        "ranking it with the closed statuses changes no comparison: it ranks below none of "
        "them either way, and a closed dispute takes no news at all",
    ),
    (
        "billing/services/disputes.py",
        "as_of < recorded or (as_of == recorded and _rank(data.status) < _rank(dispute.status))",
        "as_of < recorded or (as_of <= recorded and _rank(data.status) < _rank(dispute.status))",
        "when `as_of < recorded` the left side already answers, so the right side is only "
        "read when they are equal",
    ),
    *[
        (
            "billing/services/disputes.py",
            "dispute.stripe_event_at = max(as_of, recorded or 0)",
            f"dispute.stripe_event_at = max(as_of, recorded or {n})",
            "`as_of` is an event's `created`, a Unix time Stripe stamps (checked non-zero "
            "just above), so it is above 1 and wins the max over 0, 1 or -1 alike",
        )
        for n in (1, -1)
    ],
    # -- refunds, credit refunds, disputes, subscriptions (billing/services) --
    (
        "billing/services/subscriptions.py",
        "if not invoice.paid or invoice.amount_paid <= 0:",
        "if not invoice.paid or invoice.amount_paid == 0:",
        "an invoice's `amount_paid` is what Stripe collected, never below 0 (the reader "
        "gives 0 when it is absent)",
    ),
    (
        "billing/services/refunds.py",
        "if refund.status == S.FAILED and refund.applied_at is not None:",
        "if refund.status <= S.FAILED and refund.applied_at is not None:",
        "a refund is applied only once it has succeeded, and `_FORWARD` lets a succeeded "
        "refund move only to failed: an applied refund is never canceled, the one status "
        "sorting before 'failed'",
    ),
    (
        "billing/services/refunds.py",
        "if refund.stripe_refund_id or refund.status != S.PENDING:",
        "if refund.stripe_refund_id or refund.status < S.PENDING:",
        "only rows made pending to be sent come here (`refund_create`, the automatic "
        "refund's task, the sweep of pending rows without an id); such a row leaves "
        "pending only with its Stripe id (`_refund_store` stores it as it moves the status) "
        "or as failed when Stripe refuses it: without an id it is pending or failed, and "
        "'failed' < 'pending' as it is != it",
    ),
    (
        "billing/services/refunds.py",
        "if refund.applied_at is not None or refund.status != S.SUCCEEDED:",
        "if refund.applied_at is not None or refund.status < S.SUCCEEDED:",
        "'succeeded' sorts after every other refund status (canceled, failed, pending, "
        "requires_action), so every status but it is < it",
    ),
    (
        "billing/services/credit_refunds.py",
        "Q(status__in=LIVE) | Q(applied_at__isnull=False)",
        "Q(status__in=LIVE) | Q(applied_at__isnull=True)",
        "these are refunds in credits, stored succeeded (a LIVE status) and never moved "
        "after: they have no Stripe id and no payment, so no Stripe report reaches them; "
        "`status__in=LIVE` alone already takes every one",
    ),
    *[
        (
            "billing/services/disputes.py",
            line.format(">"),
            line.format("!="),
            "`_at_stake` answers `max(0, ...)`: the stake is never below 0, so `!= 0` is `> 0`",
        )
        for line in (
            "if dispute.is_open and dispute.frozen_at is None and stake {} 0:",
            "if stake {} 0:",
        )
    ],
    *[
        (
            "billing/services/disputes.py",
            line.format(500),
            line.format(f" {n}"),
            "a Stripe dispute id (dp_ and 24 characters) and one of Stripe's dispute reason "
            "codes (at most 25 characters) make a sentence under 100 characters: cut at 499, "
            "500 or 501 it is kept whole",
        )
        for n in (499, 501)
        for line in (
            "reason=f\"Dispute {{data.id}} lost ({{dispute.reason or 'no reason given'}})\"[:{}],",
        )
    ],
    *[
        (
            path,
            line.format("<="),
            line.format("=="),
            f"`{name}` is never below 0: what is left (`max(0, ...)`, or `card_refundable`'s "
            "answer) or an amount `to_minor` took, which refuses zero and negatives",
        )
        for path, name, line in (
            (
                "billing/services/refunds.py",
                "minor",
                "if payment is None or minor {} 0 or minor > refundable:",
            ),
            (
                "billing/services/credit_refunds.py",
                "money",
                "if payment is None or money {} 0 or money > card_left:",
            ),
        )
    ],
    (
        "billing/services/credit_refunds.py",
        "or card_part + credits_part == 0",
        "or card_part | credits_part == 0",
        "the tests before it in the same `or` already refused a negative card or credits "
        "part; of two integers 0 or more, the bitwise or is 0 exactly when both are 0, as "
        "their sum is",
    ),
    (
        "billing/services/credit_refunds.py",
        "or card_part + credits_part == 0",
        "or card_part + credits_part <= 0",
        "the tests before it in the same `or` already refused a negative card or credits "
        "part, so the sum is 0 or more here",
    ),
    *[
        (
            "billing/services/refunds.py",
            line.format(0),
            line.format(" 1"),
            "a payment receives nothing or at least Stripe's minimum charge (0.50 USD or its "
            "equivalent in each currency, always more than one minor unit), so no payment "
            "has received exactly 1",
        )
        for line in (
            'order.payments.filter(amount_received__gt={}, currency=order.currency).order_by("id")'
            ".first()",
            'Payment.objects.filter(order_id=int(data.metadata["order_id"]), '
            "amount_received__gt={})",
        )
    ],
    (
        "billing/services/credit_refunds.py",
        "if order.status != Order.Status.PAID:",
        "if order.status > Order.Status.PAID:",
        "only an order paid with credits that is not unpaid comes here (`_order_cancel`); it "
        "was paid in its create's own transaction, so it is paid, partially_refunded or "
        "refunded (ORDER_TRANSITIONS), and of those only 'paid' is not > 'paid'",
    ),
    (
        "billing/services/refunds.py",
        "if refund.source == Refund.Source.AUTOMATIC",
        "if refund.source <= Refund.Source.AUTOMATIC",
        "'automatic' sorts first of the refund sources (automatic, customer, dispute, staff, "
        "stripe), so only an automatic refund is <= it",
    ),
    (
        "billing/services/refunds.py",
        "back = refund.method == Refund.Method.CREDITS",
        "back = refund.method >= Refund.Method.CREDITS",
        "'credits' sorts after the other refund methods (as_credits, card), so only a "
        "refund in credits is >= it",
    ),
    (
        "billing/services/subscriptions.py",
        'if data.status != "paid" or not data.payment_intent_id:',
        'if data.status < "paid" or not data.payment_intent_id:',
        "an InvoicePayment is open, paid or canceled (the pinned version's documented "
        "statuses; the reader gives '' when absent), and all but 'paid' sort before it",
    ),
    *[
        (
            "billing/services/subscriptions.py",
            'if data.status != "paid" or not data.payment_intent_id:',
            f'if data.status {op} "paid" or not data.payment_intent_id:',
            "only `invoice_payment.paid` events reach here, and Stripe sends them with the "
            "object's status 'paid': for it `!=`, `>` and `is` (a str read from JSON is never "
            "the interned constant) all answer False",
        )
        for op in (">", "is")
    ],
    *[
        (
            "billing/services/refunds.py",
            line.format("=="),
            line.format(">="),
            "'succeeded' sorts after every other refund status (canceled, failed, pending, "
            "requires_action), so only a succeeded refund is >= it",
        )
        for line in (
            "if stored is not None and stored.status {} S.SUCCEEDED and stored.applied_at is None:",
            "if refund.status {} S.SUCCEEDED and refund.applied_at is None:",
        )
    ],
    (
        "billing/services/refunds.py",
        "if stored is not None and stored.status == S.SUCCEEDED and stored.applied_at is None:",
        "if stored is not None and stored.status <= S.SUCCEEDED and stored.applied_at is None:",
        "every refund status sorts <= 'succeeded': a refund that has not succeeded is then "
        "handed to `refund_apply`, which answers 'needs nothing more' for it and writes nothing",
    ),
    (
        "billing/services/subscriptions.py",
        'if payment_type == "checkout":',
        'if payment_type is "checkout":',
        "the one caller, the subscriptions API, passes its schema's `Literal` field, which "
        "pydantic answers with the literal's own str object, the same interned constant as "
        "this one; the default is 'intent': `is` answers as `==`",
    ),
    (
        "billing/services/subscriptions.py",
        'if payment_type == "checkout":',
        'if payment_type <= "checkout":',
        "the payment type is 'intent' or 'checkout' (the API schema's `Literal`, or the "
        "default), and 'intent' sorts after 'checkout'",
    ),
    *[
        (
            "billing/services/refunds.py",
            "if stored is not None and stored.status == S.SUCCEEDED and stored.applied_at is None:",
            mutant,
            "the refund sent has a payment row whose PaymentIntent Stripe's answer names, so "
            "`_refund_store` always answers a row here; a row that has not succeeded, or is "
            "applied already, handed to `refund_apply` is answered 'needs nothing more' and "
            "nothing is written",
        )
        for mutant in (
            "if stored is not None and stored.status == S.SUCCEEDED or stored.applied_at is None:",
            "if stored is not None or stored.status == S.SUCCEEDED and stored.applied_at is None:",
        )
    ],
    *[
        (
            "billing/services/disputes.py",
            "status = 409",
            f"status = {n}",
            "DisputeBeforePaymentError is raised only under `dispute_record`, which only the "
            "event handlers call, and event processing catches every error into the event's "
            "status and `last_error` (its type and message): no response renders its status",
        )
        for n in (408, 410)
    ],
    (
        "billing/services/refunds.py",
        '**({"reason": refund.reason[:500]} if refund.reason else {}),',
        '**({"reason": refund.reason[: 501]} if refund.reason else {}),',
        "the refund was just read from the database, where `Refund.reason` is a "
        "varchar(500): it never has a 501st character to keep",
    ),
    (
        "billing/services/disputes.py",
        'captured = order.payments.aggregate(s=Sum("amount_received"))["s"] or 0',
        'captured = order.payments.aggregate(s=Sum("amount_received"))["s"] or -1',
        "taken only when nothing was captured; `reversed_` is never below 0, so "
        "`captured - reversed_` is at most 0 either way and `max(0, min(...))` answers 0 alike",
    ),
    (
        "billing/services/refunds.py",
        "Q(submitted_at__lt=stale) | Q(submitted_at__isnull=True, created_at__lt=stale)",
        "Q(submitted_at__lt=stale) ^ Q(submitted_at__isnull=True, created_at__lt=stale)",
        "the two never hold for one row (the first needs `submitted_at` set, the second "
        "needs it unset), so exactly one of them is the same as either of them",
    ),
    (
        "billing/services/disputes.py",
        'captured = order.payments.aggregate(s=Sum("amount_received"))["s"] or 0',
        'captured = order.payments.aggregate(s=Sum("amount_received"))["s"] or 1',
        "taken only when the order's payments received nothing, and a dispute gets here only "
        "through a Payment row of an order paid, partially refunded or refunded: an order is "
        "paid through a payment only as that payment's received amount is recorded "
        "(payment_intent events: Stripe's amount_received, or the amount when absent; "
        "Checkout: the session's total, which must equal the order's amount; renewals: the "
        "order's amount), never lowered after (a max), and an order paid with credits alone "
        "has no Payment row; so nothing was received only for an order of amount 0, where "
        "`order.amount - reversed_` is at most 0 and the stake is 0 either way",
    ),
    (
        "billing/services/refunds.py",
        "if reported == S.FAILED:",
        "if reported is S.FAILED:",
        "`reported` comes from `_STRIPE_STATUS` or its default, whose values are the "
        "`Refund.Status` members themselves, so `is` answers as `==`",
    ),
    *[
        (
            "billing/services/refunds.py",
            "if refund.source != Refund.Source.DISPUTE:",
            f"if refund.source {op} Refund.Source.DISPUTE:",
            "a refund this lets through to the lookup finds no Dispute naming it and answers "
            '"" as the early return does: only disputes.py sets `Dispute.refund`, to the '
            "row of source `dispute` it creates; and every one of those still reaches the "
            "lookup (`is`: the row comes from the database, its source a plain str)",
        )
        for op in ("<", ">", "is")
    ],
    (
        "credits/services.py",
        "if amount <= 0:",
        "if amount <= -1:",
        "what is left to plan starts above 0 or at 0 and never goes below it (a pass takes "
        "at most what is left); at 0 a further pass takes min(..., 0) = 0, which is never "
        "planned, so going on plans nothing more",
    ),
    *[
        (
            "credits/services.py",
            "if amount <= 0:",
            mutant,
            "what is left to plan starts at 0 or above and never goes below it (a pass takes "
            "at most what is left), so this is the same test, or at 0 a further pass takes "
            "min(..., 0) = 0, which is never planned",
        )
        for mutant in ("if amount == 0:", "if amount < 0:")
    ],
    (
        "credits/services.py",
        "lots = CreditLot.objects.select_for_update().filter(account=account, remaining__gt=0)",
        "lots = CreditLot.objects.select_for_update().filter(account=account, remaining__gt= -1)",
        "a check constraint keeps `remaining` at 0 or more: the lots this adds hold 0, and the "
        "draw plan takes nothing from a lot that holds nothing (they are only locked, under "
        "the account's lock already held)",
    ),
    (
        "credits/services.py",
        "if give <= 0 or give > left:",
        "if give == 0 or give > left:",
        "`give` is an amount already refused unless above 0, or `left`, which this same check "
        "under the account's lock keeps at 0 or more: it is never below 0",
    ),
    (
        "credits/services.py",
        "if n > 0:",
        "if n != 0:",
        "`n` is never below 0: a spend draws each lot once, and the returns to a lot are "
        "planned here from what it is still owed, so they never exceed its draw",
    ),
    (
        "credits/services.py",
        "to_lots = max(account.balance + give, 0) - max(account.balance, 0)",
        "to_lots = max(account.balance + give, -1) - max(account.balance, 0)",
        "the two differ only while the debt exceeds what is given back, where -1 instead of 0 "
        "goes to the return plan, which plans nothing for either",
    ),
    (
        "credits/services.py",
        "break",
        "continue",
        "once nothing is left to plan, every further pass stops at the same test (what is left "
        "never grows), and the lots or draws looped over are already in memory: nothing more "
        "is read or planned",
    ),
    (
        "credits/services.py",
        "if lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > now:",
        "if lot.remaining == 0 or lot.expires_at is None or lot.expires_at > now:",
        "the check constraint credit_lot_remaining_within_amount keeps a lot's `remaining` at "
        "0 or more, so `<= 0` and `== 0` are the same test",
    ),
    (
        "credits/services.py",
        ".filter(account=account, plan_id=plan_id, remaining__gt=0)",
        ".filter(account=account, plan_id=plan_id, remaining__gt= -1)",
        "a check constraint keeps `remaining` at 0 or more: the lots this adds hold 0, which "
        "adds nothing to what is over the cap, and the draw plan takes nothing from a lot "
        "that holds nothing (they are only locked, under the account's lock already held)",
    ),
    (
        "credits/services.py",
        "@dataclass(frozen=True)",
        "@dataclass(frozen=False)",
        "a LedgerWrite is never hashed nor assigned to after it is made",
    ),
    (
        "credits/services.py",
        "lot.category != CreditLot.Category.PROMOTIONAL,",
        "lot.category < CreditLot.Category.PROMOTIONAL,",
        "every lot is 'paid' or 'promotional' (a grant checks its category, the opening lots "
        "are paid), and only 'paid' sorts before 'promotional'",
    ),
    (
        "credits/services.py",
        "if taken > 0:",
        "if taken >= 0:",
        "both callers pass only lots with `remaining` above zero (`remaining__gt=0`) and the "
        "loop stops once nothing is left to take, so `min(lot.remaining, amount)` is at least"
        " 1",
    ),
    (
        "credits/services.py",
        "if taken > 0:",
        "if taken != 0:",
        "both callers pass only lots with `remaining` above zero (`remaining__gt=0`) and the "
        "loop stops once nothing is left to take, so `min(lot.remaining, amount)` is at least"
        " 1",
    ),
    (
        "credits/services.py",
        "if taken > 0:",
        "if taken > -1:",
        "both callers pass only lots with `remaining` above zero (`remaining__gt=0`) and the "
        "loop stops once nothing is left to take, so `min(lot.remaining, amount)` is at least"
        " 1",
    ),
    (
        "credits/services.py",
        "if amount < 0:",
        "if amount <= 0:",
        "`_amount_checked` on the line before refuses zero and anything not an int, and for a"
        " non-zero int `< 0`, `<= 0` and `< 1` agree",
    ),
    (
        "credits/services.py",
        "if amount < 0:",
        "if amount < 1:",
        "`_amount_checked` on the line before refuses zero and anything not an int, and for a"
        " non-zero int `< 0`, `<= 0` and `< 1` agree",
    ),
    *[
        (
            "billing/services/orders.py",
            "if payment_type == Order.PaymentType.CREDITS",
            f"if payment_type {op} Order.PaymentType.CREDITS",
            "only which orders get no charge source changes, for a Checkout order (`<`, "
            "'checkout' sorts first) or an order paid with credits (`is`): neither ever reads "
            "its source (both return before `_payment_start`), and for them "
            "`charge_source_for` is a bare `ChargeSource(None)`, a card being refused for both "
            "before it",
        )
        for op in ("<", "<=", "is")
    ],
    *[
        (
            "billing/services/orders.py",
            "if locked.status == Order.Status.FAILED:",
            f"if locked.status {op} Order.Status.FAILED:",
            "`_payable_check` just above leaves pending, requires_action or failed, and "
            "'failed' sorts first of them; the mutant also moves a pending or requires_action "
            "order to pending, which `order_transition` refuses without writing anything "
            "(only a failed order may go back to pending)",
        )
        for op in ("<=", ">=", "is not")
    ],
    (
        "billing/services/orders.py",
        "if order.payment_type == Order.PaymentType.CHECKOUT:",
        "if order.payment_type <= Order.PaymentType.CHECKOUT:",
        "a replayed order paid with credits has returned on the line before, so only intent "
        "and Checkout orders get here (the API takes no other payment type), and of those "
        "only 'checkout' sorts <= 'checkout'",
    ),
    (
        "billing/services/orders.py",
        "if payment is None and order.status == Order.Status.PENDING:",
        "if payment is None and order.status >= Order.Status.PENDING:",
        "it adds processing, refunded and requires_action, which an intent order reaches only "
        "through a payment's news (`payment_apply` stores the Payment row before it moves "
        "the order; Checkout and credits orders returned above): an order with no payment "
        "here is pending, failed or canceled, never one of those three",
    ),
    (
        "billing/services/orders.py",
        "checkout = payment_type == Order.PaymentType.CHECKOUT",
        "checkout = payment_type <= Order.PaymentType.CHECKOUT",
        "the orders API lets `payment_type` be only 'intent', 'checkout' or 'credits', and "
        "only 'checkout' sorts <= 'checkout'",
    ),
    (
        "billing/services/orders.py",
        "if order.payment_type == Order.PaymentType.CHECKOUT"
        " and order.status != Order.Status.FAILED:",
        "if order.payment_type <= Order.PaymentType.CHECKOUT"
        " and order.status != Order.Status.FAILED:",
        "an order's payment type is 'intent', 'checkout' or 'credits' (the API takes no "
        "other), and of those only 'checkout' sorts <= 'checkout'",
    ),
    (
        "billing/services/orders.py",
        "if order.payment_type == Order.PaymentType.CHECKOUT"
        " and order.status != Order.Status.FAILED:",
        "if order.payment_type == Order.PaymentType.CHECKOUT"
        " and order.status > Order.Status.FAILED:",
        "`_payable_check` just above leaves pending, requires_action or failed, and the two "
        "others sort after 'failed': `>` and `!=` agree",
    ),
    (
        "billing/services/credit_payments.py",
        "if apply_credits and payment_type == Order.PaymentType.CHECKOUT:",
        "if apply_credits and payment_type <= Order.PaymentType.CHECKOUT:",
        "the orders API lets `payment_type` be only 'intent', 'checkout' or 'credits', and "
        "only 'checkout' sorts <= 'checkout'",
    ),
    (
        "billing/services/credit_payments.py",
        "if order.payment_type == Order.PaymentType.CREDITS:",
        "if order.payment_type <= Order.PaymentType.CREDITS:",
        "only an order paid with credits or an intent order applying them gets here "
        "(credits are refused with Checkout), and 'intent' sorts after 'credits'",
    ),
    *[
        (
            "billing/services/checkout.py",
            line,
            line.replace("target ==", "target is"),
            "`target` is always a member of `Order.Status` itself (the literal members for "
            "a completed session, or `_TARGETS`' values), so `is` answers as `==`",
        )
        for line in (
            "if target == Order.Status.PAID and (",
            "if target == Order.Status.PAID and payment is not None:",
            'failure = "checkout_payment_failed" if target == Order.Status.FAILED else ""',
        )
    ],
    *[
        (
            "billing/services/checkout.py",
            'failure = "checkout_payment_failed" if target == Order.Status.FAILED else ""',
            f'failure = "checkout_payment_failed" if target {op} Order.Status.FAILED else ""',
            "a failed target still gets the failure; the other targets it adds (canceled, or "
            "paid and processing) go only to `order_transition`, which stores a failure only "
            "on a move to failed (and clears it on the move to paid)",
        )
        for op in ("<=", ">=")
    ],
    (
        "credits/services.py",
        "if isinstance(amount, int) and not isinstance(amount, bool) and amount < 0:",
        "if isinstance(amount, int) and not isinstance(amount, bool) and amount <= 0:",
        "a zero amount then takes the adjustment branch, whose first step is the same "
        "`_amount_checked(0)` that refuses it on the grant branch, with the same error",
    ),
    (
        "credits/services.py",
        "if isinstance(amount, int) and not isinstance(amount, bool) and amount < 0:",
        "if isinstance(amount, int) and not isinstance(amount, bool) and amount < 1:",
        "a zero amount then takes the adjustment branch, whose first step is the same "
        "`_amount_checked(0)` that refuses it on the grant branch, with the same error",
    ),
    *[
        (
            "billing/services/payments.py",
            'amount_paid=int(stored.get("amount_paid") or 0),',
            f'amount_paid=int(stored.get("amount_paid") or {n}),',
            "an order's stored invoice is written only by `invoice_record`, which makes no "
            "order for an invoice with nothing paid (`amount_paid <= 0` answers before) and "
            "stores the invoice's amount_paid, at least the plan's price, which a check "
            "constraint keeps above 0: the `or` default is never taken",
        )
        for n in (1, -1)
    ],
    *[
        (
            "billing/services/events.py",
            "if not retaken and len(batch) < size:",
            f"if not retaken and len(batch) {op} size:",
            "a claim answers at most `size` events (the named one and `size - 1` due ones, "
            "or `size` due ones), so `<` and `!=` agree; both numbers are at most "
            "CLAIM_BATCH (25), small ints CPython keeps one object of, so `is not` answers "
            "as `!=`",
        )
        for op in ("!=", "is not")
    ],
    (
        "billing/services/event_handlers.py",
        'if session.mode == "subscription":',
        'if session.mode >= "subscription":',
        "a Checkout Session's mode is payment, setup or subscription (payment when a payload "
        "lacks it), and only 'subscription' sorts >= it",
    ),
    *[
        (
            "billing/services/events.py",
            "RIDE_WINDOW = timedelta(milliseconds=250)",
            f"RIDE_WINDOW = timedelta(milliseconds={n})",
            "a tuning figure, not a rule: an event stored a millisecond either side of the "
            "window rides on the queued drain or enqueues one of its own, and is drained "
            "either way; only the number of tasks a burst takes changes",
        )
        for n in (249, 251)
    ],
    *[
        (
            "billing/services/events.py",
            "QUEUED_DRAIN_FORGET_AFTER = timedelta(minutes=10)",
            f"QUEUED_DRAIN_FORGET_AFTER = timedelta(minutes={n})",
            "a queued drain takes riders only for RIDE_WINDOW (250 ms) after it is made; "
            "minutes later its row serves nothing (its task, if it ever starts, closes and "
            "deletes a row that may be gone and drains all the same): forgetting it after "
            "9, 10 or 11 minutes changes no event's fate",
        )
        for n in (9, 11)
    ],
    *[
        (
            "billing/services/payments.py",
            line,
            line.replace(op, mutant, 1),
            "every caller passes the target as an `Order.Status` member (the event handlers' "
            "table, `order_target_status`, Checkout's targets, the services' own literals), "
            "and an enum's members are singletons: `is` answers as `==`, `is not` as `!=`",
        )
        for line, op, mutant in (
            (
                "if target == Order.Status.PAID and target not in ORDER_TRANSITIONS[order.status]:",
                "==",
                "is",
            ),
            (
                "if target not in ORDER_TRANSITIONS[order.status] or "
                "(older and target != Order.Status.PAID):",
                "!=",
                "is not",
            ),
            ("if target == Order.Status.FAILED:", "==", "is"),
            ("if target == Order.Status.PAID:", "==", "is"),
            ("if target == Order.Status.CANCELED and order.credits:", "==", "is"),
        )
    ],
    (
        "billing/services/payments.py",
        'if intent.status == "requires_payment_method" and intent.last_error_code:',
        'if intent.status is not "requires_payment_method" and intent.last_error_code:',
        "the status here is read from Stripe's JSON, never the literal's own object, so "
        "`is not` is always true; the statuses still unanswered at this line are "
        "requires_payment_method (both sides: failed when it carries an error), "
        "requires_confirmation, reached only by creating or updating the PaymentIntent, "
        "which clears last_payment_error at Stripe and at the development Stripe, and "
        "requires_capture, which needs a manual capture Tollgate never asks for: neither "
        "carries an error code",
    ),
    (
        "billing/services/payments.py",
        'return payment.status == "succeeded" and payment.amount_received > 0',
        'return payment.status >= "succeeded" and payment.amount_received > 0',
        "a payment's status is a PaymentIntent's (canceled, processing, requires_action, "
        "requires_capture, requires_confirmation, requires_payment_method, succeeded) or "
        "\"\" before Stripe said any: only 'succeeded' sorts >= it",
    ),
    (
        "billing/services/payments.py",
        "if target == Order.Status.CANCELED and order.credits:",
        "if target <= Order.Status.CANCELED and order.credits:",
        "'canceled' sorts before every other order status, so only a move to canceled is <= it",
    ),
    (
        "billing/services/payments.py",
        "amount=payment.amount_received or intent.amount,",
        "amount=payment.amount_received and intent.amount,",
        "only a move to paid gets here, and only a succeeded PaymentIntent asks for one; "
        "Tollgate never asks for a manual capture, so a succeeded one has received its whole "
        "amount (`payment_intent_from_payload` takes the amount where a payload omits it), "
        "above 0: amount_received is the intent's amount, and `or` and `and` both answer it",
    ),
    (
        "billing/services/payments.py",
        "if order.status == Order.Status.CANCELED",
        "if order.status <= Order.Status.CANCELED",
        "'canceled' sorts before every other order status, so only a canceled order is <= it",
    ),
    (
        "billing/services/payments.py",
        'if intent.status == "succeeded":',
        'if intent.status >= "succeeded":',
        "a PaymentIntent's status is one of Stripe's seven (canceled, processing, "
        "requires_action, requires_capture, requires_confirmation, requires_payment_method, "
        "succeeded), or \"\" when a payload lacks it: only 'succeeded' sorts >= it",
    ),
    (
        "billing/services/payments.py",
        'if intent.status == "canceled":',
        'if intent.status <= "canceled":',
        "`order_target_status` is only given PaymentIntents read from Stripe's answers (to "
        "create, confirm, retrieve, cancel, or set a card: orders and reconcile), where "
        "`status` is always set, to one of Stripe's seven (canceled, processing, "
        "requires_action, requires_capture, requires_confirmation, requires_payment_method, "
        "succeeded): of them only 'canceled' sorts <= it",
    ),
    (
        "billing/services/payments.py",
        "payment = payment_row_for(order=order, intent=intent, locked=True)",
        "payment = payment_row_for(order=order, intent=intent, locked=False)",
        "the lock only changes the read of a row another transaction inserted first, so "
        "committed when the read runs; `payment_apply` holds the order's row lock, and "
        "every transaction that changes a payment row holds its order's lock first "
        "(`payment_and_order_locked`, Checkout's record, `order_pay`): nothing can change "
        "the row between the read and the commit, so it is the same row, locked or not "
        "(a row of another order is refused on its order_id, which no one changes)",
    ),
    (
        "billing/services/payments.py",
        'return PaymentOutcome(None, False, "no order of ours for this PaymentIntent")',
        'return PaymentOutcome(None, True, "no order of ours for this PaymentIntent")',
        "`applied` is read only by reconcile, which records the PaymentIntents of an "
        "order's own payment rows: the row is found, so this outcome never reaches it "
        "(the event handler reads only the reason; the orders' callers read nothing)",
    ),
    (
        "billing/services/payments.py",
        "@dataclass(frozen=True)",
        "@dataclass(frozen=False)",
        "a PaymentOutcome is never hashed nor assigned to after it is made: its callers "
        "read `reason` or `applied` and drop it",
    ),
    *[
        (
            "billing/services/payments.py",
            'if intent.status == "requires_payment_method" and intent.last_error_code:',
            f'if intent.status {op} "requires_payment_method" and intent.last_error_code:',
            "the statuses still unanswered at this line are requires_payment_method, "
            "requires_confirmation and requires_capture (`order_target_status` reads "
            "Stripe's answers, whose status is always set): of them only "
            "requires_payment_method sorts >= it, and the two others, which sort before it, "
            "carry no error code (requires_confirmation is reached only by creating or "
            "updating the PaymentIntent, which clears last_payment_error, and "
            "requires_capture needs a manual capture Tollgate never asks for)",
        )
        for op in (">=", "<=")
    ],
    (
        "billing/services/payments.py",
        'return payment.status == "succeeded" and payment.amount_received > 0',
        'return payment.status == "succeeded" and payment.amount_received != 0',
        "a payment's amount_received is never below 0: it starts at 0 and is only set to "
        "the max of itself and what Stripe says was received (a PaymentIntent's "
        "amount_received, a Checkout Session's amount_total), or to a renewal order's "
        "amount, all 0 or more",
    ),
    (
        "billing/services/payments.py",
        'return payment.status == "succeeded" and payment.amount_received > 0',
        'return payment.status == "succeeded" and payment.amount_received > 1',
        "a payment receives nothing or at least Stripe's minimum charge (0.50 USD or its "
        "equivalent in each currency, always more than one minor unit), so no payment "
        "has received exactly 1",
    ),
    *[
        (
            "billing/services/cards.py",
            "number = CardSetup.objects.filter(user_id=user_id).count() + 1",
            f"number = CardSetup.objects.filter(user_id=user_id).count() {mutant}",
            "the number only tells the user's setups' idempotency keys apart, and each of "
            "these is one-to-one in the count of the user's setups: every new setup still "
            "gets a key of its own, and a retried request (the same count) the same key",
        )
        for mutant in ("- 1", "* 1", "/ 1", "// 1", "** 1", "<< 1", "^ 1", "+ 0", "+ 2")
    ],
    *[
        (
            "billing/services/events.py",
            "while taken < limit:",
            f"while taken {op} limit:",
            "each pass takes at most `limit - taken` (the claim's size), so `taken` never "
            "passes `limit` and `<` and `!=` agree; the product never passes a limit, so it "
            "is EVENT_DRAIN_BATCH (200), and both are small ints CPython keeps one object "
            "of: `is not` answers as `!=`",
        )
        for op in ("!=", "is not")
    ],
    (
        "billing/services/events.py",
        "batch, retaken = _claim_batch(first_event_id if taken == 0 else None, size)",
        "batch, retaken = _claim_batch(first_event_id if taken <= 0 else None, size)",
        "`taken` starts at 0 and only grows: it is never below 0",
    ),
    *[
        (
            "billing/services/events.py",
            "if hand_on and not helped and len(batch) == size:",
            f"if hand_on and not helped and len(batch) {op} size:",
            "a claim answers at most `size` events, so `==` and `>=` agree; both numbers are "
            "at most CLAIM_BATCH (25), small ints CPython keeps one object of, so `is` "
            "answers as `==`",
        )
        for op in (">=", "is")
    ],
    (
        "billing/services/cards.py",
        'if customer is None or setup.status != "succeeded" or not setup.payment_method_id:',
        'if customer is None or setup.status < "succeeded" or not setup.payment_method_id:',
        "a SetupIntent's status is one of Stripe's six (canceled, processing, "
        "requires_action, requires_confirmation, requires_payment_method, succeeded), or "
        "\"\" when a payload lacks it: every one but 'succeeded' sorts before it",
    ),
]


def _annotation_spans(tree: ast.Module) -> list[Span]:
    spans: list[Span] = []

    def add(node: ast.AST | None) -> None:
        if node is not None:
            spans.append(
                ((node.lineno, node.col_offset), (node.end_lineno or 0, node.end_col_offset or 0))
            )

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                add(arg.annotation if arg else None)
            add(node.returns)
        elif isinstance(node, ast.AnnAssign):
            add(node.annotation)
    return spans


def _postponed(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )


def _is_keyword_only_marker(lines: list[str], row: int, col: int) -> bool:
    """The `*` at (row, col) stands alone between commas or a parenthesis: the marker."""
    line = lines[row - 1]
    if line[col : col + 1] != "*" or line[col + 1 : col + 2] == "*":
        return False
    after = line[col + 1 :].lstrip()
    before = line[:col].rstrip()
    if not before and row > 1:
        before = lines[row - 2].rstrip()
    return after[:1] in (",", ")") and before[-1:] in ("(", ",")


def _bare(line: str) -> str:
    return "".join(line.split())


def why_equivalent(
    source: str,
    start: tuple[int, int],
    end: tuple[int, int],
    *,
    module: str = "",
    mutated: str = "",
) -> str:
    """Why the mutant spanning `start`..`end` (cosmic-ray's 1-based rows, 0-based
    columns) cannot change behaviour, or "" when it may. `mutated`: the mutant's
    source, for the mutants in `KNOWN`."""
    lines, changed = source.splitlines(), mutated.splitlines()
    if len(lines) == len(changed):
        before, after = _bare(lines[start[0] - 1]), _bare(changed[start[0] - 1])
        for path, text, mutant, why in KNOWN:
            if module == path and before == _bare(text) and after == _bare(mutant):
                return f"read and found equivalent: {why}"
    tree = ast.parse(source)
    if _postponed(tree):
        for lo, hi in _annotation_spans(tree):
            if lo <= start and end <= hi:
                return "inside an annotation, which this module never evaluates"
    if start[0] == end[0] and _is_keyword_only_marker(source.splitlines(), *start):
        return "the keyword-only marker: every call names these arguments"
    return ""


def skip_equivalent(session: Path, root: Path) -> dict[str, int]:
    """Mark the session's equivalent and non-compiling mutants skipped (those run
    already too: the verdict comes from the source, not from a run); answers how many,
    by why."""
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        skipped: dict[str, list[str]] = {}
        for item in db.work_items:
            if len(item.mutations) != 1:
                continue
            m = item.mutations[0]
            path = str(m.module_path)
            if path not in sources:
                sources[path] = (root / path).read_text()
            operator = cosmic_ray.plugins.get_operator(m.operator_name)(**(m.operator_args or {}))
            mutated = mutate_code(sources[path], operator, m.occurrence)
            try:
                with warnings.catch_warnings():  # `x is 1` compiles, with a warning
                    warnings.simplefilter("ignore")
                    compile(mutated or "", path, "exec")
            except SyntaxError:
                why = "not Python: the mutated module does not compile"
            else:
                why = why_equivalent(
                    sources[path],
                    tuple(m.start_pos),
                    tuple(m.end_pos),
                    module=path,
                    mutated=mutated or "",
                )
            if why:
                skipped.setdefault(why, []).append(item.job_id)
        for why, job_ids in skipped.items():
            db.set_multiple_results(
                job_ids,
                WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED),
            )
            counts[why] = len(job_ids)
    return counts
