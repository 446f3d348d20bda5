"""The storm's credit payments: buyers paying bookings with credits, over the public API.

Played against the storm's web server before the webhooks, like the other API
bursts (`bench.storm_bursts`), and checked against its own reference model:

- lots: every buyer is granted credits in lots, some promotional, some paid, some
  expiring 0.3, 2 or 6 s after they are granted, as the spends start; some buy
  a credit pack by card first;
- spends, all at once (one barrier): buyers pay a workshop's credit price with
  `payment_type: "credits"`, several orders each, on one session whose capacity
  is exactly the seats the model says they buy; some have too few credits for
  all of them (409 `insufficient_credits` for the rest, nothing held), some for
  any (409, for the credits, or for the seats once the model's are sold: both
  are true then). Meanwhile the expiry sweep (`credits_expire_due`, what the scheduled
  task runs) loops, expiring lots while spends draw them;
- splits (`apply_credits` with a card, too few credits for the whole price): a
  declined card (402; the order keeps its credits), then cancelled (credits back
  once) or paid again with a good card (paid once); a good card at once (paid);
  no card at all, cancelled before paying; a good card then refunded by staff
  (the card and the credits);
- follow-ups, each sent twice at the same moment: the buyer cancels a booking
  paid with credits (credits back once), staff refund one in credits, staff
  refund a split order in full, staff refund a card-paid booking as credits
  (`to_credits`); the second of each pair must be refused (409).

The model says each answer (status and code, or the order's status), each
order's final status and booking, and each buyer's balance: exact, except for
buyers holding an expiring lot, where how much expired depends on whether a
spend or the sweep reached the lot first. For those it says the bounds (at
least what the spends could not have taken, at most the lot) and that every
credit of the lot was either spent or expired, none both, none lost.

The rule: the model is drawn before anything is sent and never reads what the
platform did; the final figures are SQL over the database (`bench.checks`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.storm_bursts import Answer, _at_once
from bench.storm_plan import _stripe_client, _users_with_tokens

PRICE = 4500  # the workshop's price, in cents
CREDIT_PRICE = 40  # and in credits
PACK = {"is_credit_purchase": True, "credit_amount": 100, "amount": "10.00"}
PACK_CREDITS = 100
DECLINED_CARD = "4000000000000002"
GOOD_CARD = "4242424242424242"
# When the expiring lots lapse, seconds after they are granted (just before the spends'
# barrier): some before the spends arrive, some while they run, some after.
EXPIRES_AFTER_S = (0.3, 6.0, 2.0)
REFUSED = (409, "refused")  # a repeat refused, whichever conflict it names
# A credit order past what the buyer can pay, once the seats the model sells are gone:
# refused for the credits or for the seats, whichever the platform looks at first.
UNPAYABLE = (409, "insufficient_credits or seats_unavailable")


@dataclass
class Buyer:
    """One buyer, what they are given, what they send, and what the model says of it."""

    role: str  # payer | short | expirer | split-* | card
    user_id: int
    token: str
    promotional: int = 0
    paid: int = 0
    expiring: int = 0  # one lot that expires while the spends run
    expires_after: float = 0.0  # seconds after the grant
    pack: bool = False  # buys a pack of PACK_CREDITS by card during the storm
    tries: int = 0  # credit orders sent at once
    cancels: int = 0  # of their paid credit orders: cancelled by the buyer (twice each)
    staff_refunds: int = 0  # and refunded in credits by staff (twice each)
    # What the storm saw.
    order_ids: list[int] = field(default_factory=list)
    expiring_lot_id: int | None = None

    @property
    def funded(self) -> int:
        return self.promotional + self.paid + self.expiring + (PACK_CREDITS if self.pack else 0)

    @property
    def affordable(self) -> int:
        """Credit orders that must be paid: for an expirer, only what is not expiring counts
        (the model asks that the other lots pay all of them, whenever the sweep comes)."""
        if self.role == "expirer":
            return self.tries
        return min(self.tries, self.funded // CREDIT_PRICE) if self.role != "card" else 0

    @property
    def expected_balance(self) -> int | None:
        """Exact for every buyer without an expiring lot (None: an expirer, held by `off`
        to the bounds of what may have expired)."""
        if self.role == "expirer":
            return None
        if self.role == "card":
            return CREDIT_PRICE  # the card payment refunded as credits
        if self.role.startswith("split-"):
            # All of it went to the order; it comes back unless the order ends paid.
            kept = self.role in ("split-paid", "split-declined-paid")
            return 0 if kept else self.funded
        back = (self.cancels + self.staff_refunds) * CREDIT_PRICE
        return self.funded - self.affordable * CREDIT_PRICE + back


@dataclass
class CreditStorm:
    service_id: int
    tight_session: int  # credit-only orders; capacity = the seats the model says they buy
    split_session: int  # split and card orders; capacity = their number
    staff_token: str
    buyers: list[Buyer]
    steps: list[tuple[str, Counter, Counter]] = field(default_factory=list)
    # order id -> (expected order status, expected booking status or None)
    expected: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    sweeps: int = 0
    swept_lots: int = 0
    # Pairs of simultaneous cancels of an unpaid order both answered 200 (see `run`).
    cancels_answered_twice: int = 0
    # Of the expiring lots' credits: how many spends took, and how many expired.
    expiring_spent: int = 0
    expiring_expired: int = 0
    sweep_error: str = ""


def _buyer_roles(small: bool) -> list[tuple[str, dict[str, Any]]]:
    """The buyers and what each has and sends; the small storm has fewer of each."""
    k = 1 if small else 3
    roles: list[tuple[str, dict[str, Any]]] = []
    for i in range(2 * k):
        # Enough for 3 of 5, then 2 of them given back: promotional, paid and a pack.
        roles.append(
            (
                "payer",
                {
                    "promotional": 30,
                    "paid": 25,
                    "pack": True,
                    "tries": 5,
                    "cancels": 1,
                    "staff_refunds": 1,
                },
            )
        )
        # Enough for all 4: granted only.
        roles.append(("payer", {"promotional": 80 + i, "paid": 80, "tries": 4, "cancels": 1}))
    for _ in range(k):
        roles.append(("short", {"paid": CREDIT_PRICE - 1, "tries": 3}))
    for i in range(2 * k):
        # A lot that expires as the spends run, and paid credits that pay every order:
        # one order leaves part of the lot to expire whatever comes first, three may not.
        tries = 1 if i % 2 == 0 else 3
        roles.append(
            (
                "expirer",
                {
                    "expiring": 50 + 10 * i,
                    "expires_after": EXPIRES_AFTER_S[i % len(EXPIRES_AFTER_S)],
                    "paid": tries * CREDIT_PRICE,
                    "tries": tries,
                },
            )
        )
    for role in (
        "split-declined-cancel",
        "split-declined-paid",
        "split-paid",
        "split-cancel",
        "split-paid-refunded",
    ):
        for _ in range(k):
            roles.append((role, {"promotional": 10, "paid": 10}))
    for _ in range(k):
        roles.append(("card", {}))
    return roles


def build(*, small: bool) -> CreditStorm | None:
    """The workshop, its two sessions, the buyers and the staff member (no credits yet:
    `run` grants them, so that the expiring lots expire while the spends run)."""
    from purchasables.registry import registry

    if not any(t.name == "workshop" for t in registry.purchase_types()):
        return None
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from bookings.models import Service, ServiceSession

    roles = _buyer_roles(small)
    people = _users_with_tokens(len(roles), "storm-credits")
    buyers = [
        Buyer(role=role, user_id=uid, token=tok, **spec)
        for (role, spec), (uid, tok) in zip(roles, people, strict=True)
    ]
    staff_id, staff_token = _users_with_tokens(1, "storm-finance")[0]
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.get(pk=staff_id)
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    staff.groups.add(Group.objects.get(name="finance"))

    service = Service.objects.create(
        name="Storm credit workshop",
        kind=Service.Kind.WORKSHOP,
        price=PRICE,
        currency="usd",
        credit_price=CREDIT_PRICE,
    )
    start = timezone.now() + timedelta(days=8)
    tight = sum(b.affordable for b in buyers)
    split = sum(1 for b in buyers if b.role.startswith("split-") or b.role == "card")
    sessions = [
        ServiceSession.objects.create(
            service=service,
            start=start + timedelta(hours=2 * i),
            end=start + timedelta(hours=2 * i + 1),
            capacity=capacity,
        ).pk
        for i, capacity in enumerate((tight, split))
    ]
    return CreditStorm(service.pk, sessions[0], sessions[1], staff_token, buyers)


# --- playing it -------------------------------------------------------------------------


def _card(number: str) -> str:
    """A payment method at the storm's Stripe made from a test card number."""
    method = _stripe_client().v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return method.id


def _step(cs: CreditStorm, name: str, calls, expected: Counter) -> list[Answer]:
    answers = _at_once(calls) if calls else []
    cs.steps.append((name, expected, Counter(answers)))
    return answers


def _grant(cs: CreditStorm) -> float:
    """Grant every buyer's lots; answers when the last expiring one lapses (epoch s)."""
    from django.utils import timezone

    from credits.models import CreditLot
    from credits.services import credits_grant

    granted = timezone.now()

    for b in cs.buyers:
        for category, amount in (("promotional", b.promotional), ("paid", b.paid)):
            if amount:
                credits_grant(
                    user_id=b.user_id,
                    amount=amount,
                    reference=f"storm-{category}-{b.user_id}",
                    category=category,
                    memo="storm",
                )
        if b.expiring:
            entry = credits_grant(
                user_id=b.user_id,
                amount=b.expiring,
                reference=f"storm-expiring-{b.user_id}",
                category="promotional",
                expires_at=granted + timedelta(seconds=b.expires_after),
                memo="storm, expiring",
            )
            b.expiring_lot_id = CreditLot.objects.get(entry=entry).pk
    return granted.timestamp() + max((b.expires_after for b in cs.buyers), default=0.0)


class _Sweeper(threading.Thread):
    """The expiry sweep, again and again, as the scheduler would run it, until stopped."""

    def __init__(self, cs: CreditStorm) -> None:
        super().__init__(daemon=True)
        self.cs = cs
        self.stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from credits.services import credits_expire_due

        try:
            while not self.stop_event.wait(0.05):
                self.cs.swept_lots += credits_expire_due()
                self.cs.sweeps += 1
        except Exception as exc:  # reported as a violation by `off`
            self.cs.sweep_error = repr(exc)
        finally:
            connection.close()


def _order_body(cs: CreditStorm, b: Buyer, session: int, **more: Any) -> dict[str, Any]:
    return {
        "service_id": cs.service_id,
        "scheduling_data": {"service_session_id": session},
        **more,
    }


def run(cs: CreditStorm | None, web_url: str) -> None:
    """Play every step (see the module) and record what the model expects of each order."""
    if cs is None:
        return

    api = web_url + "/api/v1/payments"
    create = api + "/create/"
    by_role: dict[str, list[Buyer]] = {}
    for b in cs.buyers:
        by_role.setdefault(b.role, []).append(b)

    # Packs bought by card, at once.
    packers = [b for b in cs.buyers if b.pack]
    _step(
        cs,
        "credit packs bought by card, at once",
        [(b.token, "POST", create, {**PACK, "payment_method_id": "pm_card_visa"}) for b in packers],
        Counter({(201, "paid"): len(packers)}),
    )

    # Every spend and split at once, the expiry sweep looping as the expiring lots lapse.
    declined = {b.user_id: _card(DECLINED_CARD) for b in cs.buyers if "declined" in b.role}
    good = {
        b.user_id: _card(GOOD_CARD)
        for b in cs.buyers
        if b.role in ("split-declined-paid", "split-paid", "split-paid-refunded", "card")
    }
    last_lapse = _grant(cs)
    calls, expected, who = [], Counter(), []
    for b in cs.buyers:
        if b.role in ("payer", "short", "expirer"):
            for _ in range(b.tries):
                calls.append(
                    (
                        b.token,
                        "POST",
                        create,
                        _order_body(cs, b, cs.tight_session, payment_type="credits"),
                    )
                )
                who.append(b)
            expected[(201, "paid")] += b.affordable
            expected[UNPAYABLE] += b.tries - b.affordable
            continue
        body = _order_body(cs, b, cs.split_session)
        if b.role == "card":
            body["payment_method_id"] = good[b.user_id]
            expected[(201, "paid")] += 1
        else:
            body["apply_credits"] = True
            if "declined" in b.role:
                body["payment_method_id"] = declined[b.user_id]
                expected[(402, "card_declined")] += 1
            elif b.role == "split-cancel":
                expected[(201, "pending")] += 1
            else:
                body["payment_method_id"] = good[b.user_id]
                expected[(201, "paid")] += 1
        calls.append((b.token, "POST", create, body))
        who.append(b)
    sweeper = _Sweeper(cs)
    sweeper.start()
    try:
        raw = _at_once_with_ids(calls)
        cs.steps.append(
            (
                "credit orders and splits at once, the expiry sweep looping",
                expected,
                Counter(_unpayable(a) for a, _ in raw),
            )
        )
        for b, (_, order_id) in zip(who, raw, strict=True):
            if order_id is not None:
                b.order_ids.append(order_id)
        for b in cs.buyers:
            b.order_ids.sort()

        # Follow-ups, each twice at the same moment.
        calls, expected = [], Counter()
        unpaid_cancels: list[int] = []  # where each pair of cancels of an unpaid order starts

        def twice(token: str, url: str, body: dict[str, Any], first: Answer) -> None:
            if first == (200, "canceled"):
                unpaid_cancels.append(len(calls))
            calls.extend([(token, "POST", url, body)] * 2)
            expected[first] += 1
            expected[REFUSED] += 1

        for b in by_role.get("payer", []):
            paid = b.order_ids[: b.affordable]
            for oid in paid[: b.cancels]:
                twice(b.token, api + f"/orders/{oid}/cancel/", {}, (200, "refunded"))
                cs.expected[oid] = ("refunded", "canceled")
            for oid in paid[b.cancels : b.cancels + b.staff_refunds]:
                twice(cs.staff_token, api + f"/orders/{oid}/refunds/", {}, (201, "succeeded"))
                cs.expected[oid] = ("refunded", "canceled")
            for oid in paid[b.cancels + b.staff_refunds :]:
                cs.expected[oid] = ("paid", "confirmed")
        for b in by_role.get("expirer", []):
            for oid in b.order_ids:
                cs.expected[oid] = ("paid", "confirmed")
        for b in by_role.get("split-declined-cancel", []) + by_role.get("split-cancel", []):
            for oid in b.order_ids:
                twice(b.token, api + f"/orders/{oid}/cancel/", {}, (200, "canceled"))
                cs.expected[oid] = ("canceled", None)
        for b in by_role.get("split-declined-paid", []):
            for oid in b.order_ids:
                calls.append(
                    (
                        b.token,
                        "POST",
                        api + f"/orders/{oid}/pay/",
                        {"payment_method_id": good[b.user_id]},
                    )
                )
                expected[(200, "paid")] += 1
                cs.expected[oid] = ("paid", "confirmed")
        for b in by_role.get("split-paid", []):
            for oid in b.order_ids:
                cs.expected[oid] = ("paid", "confirmed")
        for b in by_role.get("split-paid-refunded", []):
            for oid in b.order_ids:
                twice(cs.staff_token, api + f"/orders/{oid}/refunds/", {}, (201, "succeeded"))
                cs.expected[oid] = ("refunded", "canceled")
        for b in by_role.get("card", []):
            for oid in b.order_ids:
                twice(
                    cs.staff_token,
                    api + f"/orders/{oid}/refunds/",
                    {"to_credits": True},
                    (201, "succeeded"),
                )
                cs.expected[oid] = ("refunded", "canceled")
        answers = _at_once(calls) if calls else []
        for at in unpaid_cancels:
            # Both cancels of an unpaid order may pass the status check before either takes
            # the order's lock; the second then answers the canceled order (200), not 409.
            # The credits still go back once (the balances and the SQL checks say so); the
            # answers are shown, not counted as a violation.
            if answers[at] == answers[at + 1] == (200, "canceled"):
                cs.cancels_answered_twice += 1
                answers[at + 1] = REFUSED
        seen = Counter(_refused(a) for a in answers)
        cs.steps.append(("cancels, refunds and payments again, each twice at once", expected, seen))
    finally:
        sweeper.stop_event.set()
        sweeper.join(timeout=60)
    # The last sweep, after everything: what is due has nothing left.
    from credits.services import credits_expire_due

    time.sleep(max(0.0, last_lapse - time.time()) + 0.1)
    cs.swept_lots += credits_expire_due()
    cs.sweeps += 1


def _unpayable(a: Answer) -> Answer:
    return UNPAYABLE if a in ((409, "insufficient_credits"), (409, "seats_unavailable")) else a


def _refused(a: Answer) -> Answer:
    status, code = a
    if status == 409 and code in ("order_state_conflict", "refund_exceeds_captured"):
        return REFUSED
    return a


def _at_once_with_ids(calls) -> list[tuple[Answer, int | None]]:
    """`_at_once`, also keeping each answer's order id (a 402 names it in `extra`)."""
    import requests

    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def send(i: int) -> None:
        token, method, url, body = calls[i]
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {token}"
            barrier.wait(timeout=60)
            try:
                resp = s.request(method, url, json=body, timeout=60)
            except requests.RequestException as exc:
                out[i] = ((0, type(exc).__name__), None)
                return
            try:
                data = resp.json()
            except ValueError:
                out[i] = ((resp.status_code, "not json"), None)
                return
            if resp.status_code >= 400:
                order_id = (data.get("extra") or {}).get("order_id")
                out[i] = ((resp.status_code, str(data.get("code", ""))), order_id)
            else:
                out[i] = ((resp.status_code, str(data.get("status"))), data.get("order_id"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


# --- what must hold -----------------------------------------------------------------------


def off(cs: CreditStorm | None) -> dict[str, int]:
    """Every figure a count of what broke the model (0 passes)."""
    if cs is None:
        return {}
    from django.db.models import Sum

    from billing.models import Order
    from bookings.models import Booking
    from credits.models import CreditAccount, CreditLot, CreditTransaction

    steps_off = sum(1 for _, want, got in cs.steps if want != got)
    cs.expiring_spent = cs.expiring_expired = 0
    statuses = dict(Order.objects.filter(pk__in=list(cs.expected)).values_list("pk", "status"))
    bookings: dict[int, list[str]] = {}
    for oid, status in Booking.objects.filter(order_id__in=list(cs.expected)).values_list(
        "order_id", "status"
    ):
        bookings.setdefault(oid, []).append(status)
    orders_off = sum(1 for oid, (st, _) in cs.expected.items() if statuses.get(oid) != st)
    bookings_off = 0
    for oid, (_, booking) in cs.expected.items():
        got = bookings.get(oid, [])
        if (booking is None and any(s != "canceled" for s in got)) or (
            booking is not None and got != [booking]
        ):
            bookings_off += 1
    # Orders the model did not expect (a refused request that left one behind).
    user_ids = [b.user_id for b in cs.buyers]
    stray = _stray_orders(cs)
    balances = dict(
        CreditAccount.objects.filter(user_id__in=user_ids).values_list("user_id", "balance")
    )
    balances_off, expiry_off = 0, 0
    for b in cs.buyers:
        want = b.expected_balance
        got = balances.get(b.user_id, 0)
        if want is not None:
            balances_off += got != want
            continue
        # An expirer: every credit of the expiring lot spent or expired, never both.
        expired = -(
            CreditTransaction.objects.filter(
                account__user_id=b.user_id, kind=CreditTransaction.Kind.EXPIRY
            ).aggregate(s=Sum("amount"))["s"]
            or 0
        )
        spent = b.tries * CREDIT_PRICE
        low, high = max(0, b.expiring - spent), b.expiring
        cs.expiring_expired += expired
        cs.expiring_spent += b.expiring - expired
        lot = CreditLot.objects.filter(pk=b.expiring_lot_id).first()
        if (
            not low <= expired <= high
            or got != b.funded - spent - expired
            or lot is None
            or lot.remaining != 0
        ):
            expiry_off += 1
    return {
        "credit steps not answered as the model says": steps_off,
        "credit-paid orders not in the model's final state": orders_off + stray,
        "credit-paid bookings not as the orders say": bookings_off,
        "credit buyers whose balance != the reference model": balances_off,
        "expiring lots not wholly spent or expired, once": expiry_off,
        "expiry sweeps that failed": 1 if cs.sweep_error else 0,
    }


def _stray_orders(cs: CreditStorm) -> int:
    """Orders of the credit buyers that the model has no line for."""
    from billing.models import Order

    user_ids = [b.user_id for b in cs.buyers]
    return (
        Order.objects.filter(user_id__in=user_ids)
        .exclude(pk__in=list(cs.expected))
        .exclude(order_type="credit")  # the packs
        .count()
    )


def lines(cs: CreditStorm | None) -> list[str]:
    if cs is None:
        return []
    out = []
    for name, want, got in cs.steps:
        mark = "ok" if want == got else "OFF"
        out.append(f"  credit step {mark:<3} {name}: {dict(got)} (model {dict(want)})")
    roles = Counter(b.role for b in cs.buyers)
    out.append(
        f"  credit buyers {dict(roles)}; {len(cs.expected)} credit-priced orders; "
        f"expiry sweep ran {cs.sweeps} times, expired {cs.swept_lots} lots; of the "
        f"expiring lots' credits {cs.expiring_spent} spent first, {cs.expiring_expired} expired"
        + (f"; sweep error {cs.sweep_error}" if cs.sweep_error else "")
        + f"; simultaneous cancels of an unpaid order both answered 200: "
        f"{cs.cancels_answered_twice}"
    )
    return out
