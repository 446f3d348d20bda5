"""Invariant checks, as SQL over the stack's database (Django must be set up).

Each check answers a count of violations, so 0 is the only passing figure. They
read the whole tables, not only the rows a run made, so history loaded by
`bench.seed.background_fill` is checked too.

The rule: a check never trusts a counter the application keeps about itself
when the rows it summarises can be counted instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection


def _one(sql: str, params: Iterable = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return int(row[0] or 0)


def fulfilled_twice() -> int:
    """Orders with more than one fulfilment, or more than one purchase/cycle ledger entry."""
    return _one(
        "SELECT count(*) FROM (SELECT order_id FROM billing_fulfilment "
        "GROUP BY order_id HAVING count(*) > 1) f"
    ) + _one(
        "SELECT count(*) FROM (SELECT account_id, reference FROM credits_credittransaction "
        "WHERE reference LIKE 'order-%%' GROUP BY 1, 2 HAVING count(*) > 1) t"
    )


def paid_not_fulfilled() -> int:
    """Orders that reached paid (or a refund of it) with no fulfilment row."""
    return _one(
        "SELECT count(*) FROM billing_order o LEFT JOIN billing_fulfilment f "
        "ON f.order_id = o.id WHERE o.status IN ('paid','partially_refunded','refunded') "
        "AND f.id IS NULL"
    )


def credit_orders_without_entry() -> int:
    """Fulfilled credit or subscription orders whose credits never reached the ledger."""
    return _one(
        "SELECT count(*) FROM billing_fulfilment f JOIN billing_order o ON o.id = f.order_id "
        "WHERE o.order_type IN ('credit','subscription') AND NOT EXISTS ("
        "  SELECT 1 FROM credits_credittransaction t "
        "  WHERE t.reference = 'order-' || o.id::text)"
    )


def ledger_mismatches() -> int:
    """Accounts whose balance differs from the sum of their ledger entries."""
    return _one(
        "SELECT count(*) FROM credits_creditaccount a LEFT JOIN ("
        "  SELECT account_id, sum(amount) AS s FROM credits_credittransaction GROUP BY 1) t "
        "ON t.account_id = a.id WHERE a.balance <> coalesce(t.s, 0)"
    )


def running_balance_breaks() -> int:
    """Entries whose `balance_after` is not the running sum of the account's ledger."""
    return _one(
        "SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER "
        "(PARTITION BY account_id ORDER BY id) AS running FROM credits_credittransaction) t "
        "WHERE balance_after <> running"
    )


def negative_spends() -> int:
    """Spends (or staff adjustments) that took a balance below zero."""
    return _one(
        "SELECT count(*) FROM credits_credittransaction "
        "WHERE kind IN ('spend','adjustment') AND balance_after < 0"
    )


def refunds_applied_twice() -> int:
    """Refunds reversed more than once, or orders refunded beyond what was captured."""
    twice = _one(
        "SELECT count(*) FROM (SELECT account_id, reference FROM credits_credittransaction "
        "WHERE kind = 'refund' GROUP BY 1, 2 HAVING count(*) > 1) t"
    )
    stripe_twice = _one(
        "SELECT count(*) FROM (SELECT stripe_refund_id FROM billing_refund "
        "WHERE stripe_refund_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) r"
    )
    beyond = _one(
        "SELECT count(*) FROM billing_order o JOIN ("
        "  SELECT order_id, sum(amount) AS s FROM billing_refund "
        "  WHERE applied_at IS NOT NULL GROUP BY 1) r ON r.order_id = o.id "
        "WHERE r.s > o.credits_value + (SELECT coalesce(sum(amount_received), 0) "
        "             FROM billing_payment p WHERE p.order_id = o.id)"
    )
    entries = _one(
        "SELECT count(*) FROM billing_refund r WHERE r.applied_at IS NOT NULL "
        "AND (SELECT count(*) FROM credits_credittransaction t "
        "     WHERE t.reference = 'refund-' || r.id::text) > 1"
    )
    return twice + stripe_twice + beyond + entries


def lots_off_balance() -> int:
    """Accounts whose lots' remaining credits are not the balance (zero while in debt)."""
    return _one(
        "SELECT count(*) FROM credits_creditaccount a LEFT JOIN ("
        "  SELECT account_id, sum(remaining) AS s FROM credits_creditlot GROUP BY 1) l "
        "ON l.account_id = a.id WHERE coalesce(l.s, 0) <> greatest(a.balance, 0)"
    )


def below_zero_not_refund() -> int:
    """Entries that took a balance below zero other than a refund debit."""
    return _one(
        "SELECT count(*) FROM credits_credittransaction "
        "WHERE amount < 0 AND balance_after < 0 AND kind <> 'refund'"
    )


def expired_lots_with_credits() -> int:
    """Lots past their expiry with credits left (read after the expiry sweep has run)."""
    return _one(
        "SELECT count(*) FROM credits_creditlot WHERE expires_at <= now() AND remaining > 0"
    )


def credit_orders_taken_wrong() -> int:
    """Orders that took credits with not exactly one spend of exactly those credits, or
    whose spend was given back more than it took (returns, and refund rows in credits)."""
    not_once = _one(
        "SELECT count(*) FROM billing_order o WHERE o.credits > 0 AND ("
        "  SELECT count(*) FROM credits_credittransaction t "
        "  WHERE t.reference = 'spend:' || o.credits_reference AND t.kind = 'spend' "
        "  AND t.amount = -o.credits) <> 1"
    )
    returned_more = _one(
        "SELECT count(*) FROM credits_credittransaction s JOIN ("
        "  SELECT returns_id, sum(amount) AS back FROM credits_credittransaction "
        "  WHERE returns_id IS NOT NULL GROUP BY 1) r ON r.returns_id = s.id "
        "WHERE r.back > -s.amount"
    )
    refunded_more = _one(
        "SELECT count(*) FROM billing_order o JOIN ("
        "  SELECT order_id, sum(credits) AS c FROM billing_refund "
        "  WHERE method = 'credits' AND applied_at IS NOT NULL GROUP BY 1) r "
        "ON r.order_id = o.id WHERE r.c > o.credits"
    )
    return not_once + returned_more + refunded_more


def credit_orders_unsettled() -> int:
    """Orders holding credits that ended unpaid (canceled) without all of them back, or
    that were fulfilled although never paid."""
    canceled_kept = _one(
        "SELECT count(*) FROM billing_order o JOIN credits_credittransaction s "
        "ON s.reference = 'spend:' || o.credits_reference AND s.kind = 'spend' "
        "WHERE o.credits > 0 AND o.status = 'canceled' AND -s.amount <> coalesce(("
        "  SELECT sum(amount) FROM credits_credittransaction r WHERE r.returns_id = s.id), 0)"
    )
    fulfilled_unpaid = _one(
        "SELECT count(*) FROM billing_order o JOIN billing_fulfilment f ON f.order_id = o.id "
        "WHERE o.credits > 0 AND o.status IN ('pending','requires_action','failed','canceled')"
    )
    return canceled_kept + fulfilled_unpaid


def events_unfinished() -> int:
    """Stored events not yet at rest (pending, processing, retrying, failed); processed,
    ignored and another system's (`not_ours`) are final."""
    return _one(
        "SELECT count(*) FROM billing_stripeevent "
        "WHERE status NOT IN ('processed', 'ignored', 'not_ours')"
    )


def events_by_status() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM billing_stripeevent GROUP BY 1 ORDER BY 1")
        return {status: n for status, n in cursor.fetchall()}


def overbooked_sessions() -> int | None:
    """Sessions holding more seat-taking bookings than their capacity (None: no bookings app)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bookings_servicesession')")
        if cursor.fetchone()[0] is None:
            return None
    return _one(
        "SELECT count(*) FROM (SELECT s.id FROM bookings_servicesession s "
        "JOIN bookings_booking b ON b.session_id = s.id "
        "AND b.status IN ('confirmed','partially_refunded','completed') "
        "GROUP BY s.id, s.capacity HAVING count(*) > s.capacity) x"
    )


def subscriptions_live_twice() -> int:
    """Users with more than one live subscription record for one plan."""
    return _one(
        "SELECT count(*) FROM (SELECT user_id, purchase_type, plan_ref "
        "FROM billing_subscription "
        "WHERE status IN ('incomplete','trialing','active','past_due') "
        "GROUP BY 1, 2, 3 HAVING count(*) > 1) s"
    )


def sessions_over_capacity() -> int | None:
    """Sessions whose seat-taking bookings and live holds together pass their capacity
    (None: no bookings app). A hold counts while it is active and its time has not run
    out, whether or not the sweep has marked it yet."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bookings_servicesession')")
        if cursor.fetchone()[0] is None:
            return None
    return _one(
        "SELECT count(*) FROM bookings_servicesession s WHERE s.capacity < "
        "  (SELECT count(*) FROM bookings_booking b WHERE b.session_id = s.id "
        "   AND b.status IN ('confirmed','partially_refunded','completed')) "
        "+ (SELECT coalesce(sum(h.quantity), 0) FROM bookings_seathold h "
        "   WHERE h.session_id = s.id AND h.status = 'active' AND h.expires_at > now())"
    )


def holds_past_limits(*, user_ids: list[int], per_session: int, per_user: int) -> int:
    """Of these users, those holding more live unpaid seats in one session than
    `per_session`, or live holds for more orders than `per_user`."""
    return _one(
        "SELECT count(*) FROM (SELECT user_id, session_id FROM bookings_seathold h "
        "WHERE h.user_id = ANY(%s) AND h.session_id IS NOT NULL "
        "AND h.status = 'active' AND h.expires_at > now() "
        "GROUP BY 1, 2 HAVING sum(quantity) > %s) x",
        [user_ids, per_session],
    ) + _one(
        "SELECT count(*) FROM (SELECT user_id FROM bookings_seathold h "
        "WHERE h.user_id = ANY(%s) AND h.status = 'active' AND h.expires_at > now() "
        "GROUP BY 1 HAVING count(DISTINCT order_id) > %s) x",
        [user_ids, per_user],
    )


def holds_longer_than(*, minutes: int) -> int:
    """Holds set to end later than `minutes` after they were made (never extended)."""
    return _one(
        "SELECT count(*) FROM bookings_seathold "
        "WHERE expires_at > created_at + make_interval(mins => %s) + interval '5 seconds'",
        [minutes],
    )


def all_invariants() -> dict[str, int | None]:
    return {
        "fulfilled twice": fulfilled_twice(),
        "paid but not fulfilled": paid_not_fulfilled(),
        "fulfilled without ledger entry": credit_orders_without_entry(),
        "ledger != balance (accounts)": ledger_mismatches(),
        "running balance breaks": running_balance_breaks(),
        "spends below zero": negative_spends(),
        "refunds applied twice": refunds_applied_twice(),
        "overbooked sessions": overbooked_sessions(),
        "lots != balance (accounts)": lots_off_balance(),
        "below zero other than a refund debit": below_zero_not_refund(),
        "expired lots with credits left": expired_lots_with_credits(),
        "orders' credits taken other than once, or given back more": (credit_orders_taken_wrong()),
        "unpaid orders keeping credits, or fulfilled": credit_orders_unsettled(),
    }
