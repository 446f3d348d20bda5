"""Booking plans: what a purchase will book, validated against the database but not yet held.

A plan is a tree of `PlanNode`s with one node per booking to be made:

- `session` (1-on-1): one node with the slot `[start, start + duration)`, from
  `scheduling_data = {"start_datetime": "<ISO-8601 with a timezone>"}`.
- `workshop`: one node with a seat in `scheduling_data["service_session_id"]`,
  or in the workshop's only upcoming session when none is named.
- `course`: a parent node with a child per session of the course (all of them
  must be in the future).
- `package` / `bundle` (the same mechanics; a package is usually several of
  one service, a bundle a mix): a parent node with a child per unit of each
  `PackageItem`, each built as above. `scheduling_data = {"items": [{"service_id":
  <item>, "start_datetime" | "service_session_id": …}, …]}` schedules units,
  one entry per unit, in order. A workshop unit with no entry takes its
  workshop's only upcoming session; a course unit books every session; a
  1-on-1 unit with no entry becomes an unscheduled booking that its owner
  schedules later (`POST /api/v1/bookings/{id}/schedule/`).

The rule: a plan is built from the database on every request; nothing the
client sends but ids and times is trusted. Building checks free seats without
a lock, as a courtesy; only `seats.seats_lock` + `seats_check` decide.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from bookings.models import AvailabilityWindow, Service, ServiceSession
from bookings.services.seats import seat_needs, seats_check
from kernel.errors import InvalidInputError
from kernel.times import input_datetime_check

Kind = Service.Kind


@dataclass(frozen=True)
class PlanNode:
    """One booking to make. A seat when `session_id` is set; a slot when only `start` is."""

    service_id: int
    kind: str
    session_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    scheduling_data: dict[str, Any] = field(default_factory=dict)
    children: tuple[PlanNode, ...] = ()

    @property
    def needs_seat(self) -> bool:
        return self.session_id is not None

    @property
    def needs_slot(self) -> bool:
        return self.session_id is None and self.start is not None

    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            "kind": self.kind,
            "session_id": self.session_id,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "scheduling_data": self.scheduling_data,
            "children": [child.to_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanNode:
        return cls(
            service_id=int(data["service_id"]),
            kind=data["kind"],
            session_id=data.get("session_id"),
            start=datetime.fromisoformat(data["start"]) if data.get("start") else None,
            end=datetime.fromisoformat(data["end"]) if data.get("end") else None,
            scheduling_data=dict(data.get("scheduling_data") or {}),
            children=tuple(cls.from_dict(c) for c in data.get("children") or []),
        )


def start_datetime_parse(value: Any, *, field_name: str = "start_datetime") -> datetime:
    """An ISO-8601 date and time with a timezone, or `InvalidInputError` saying what is wrong."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"`{field_name}` is required: an ISO-8601 date and time with a timezone, "
            "such as 2030-01-31T14:00:00+00:00.",
            field=field_name,
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"`{field_name}` {value!r} is not an ISO-8601 date and time.",
            field=field_name,
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInputError(
            f"`{field_name}` {value!r} has no timezone; add one, such as +00:00 or Z.",
            field=field_name,
        )
    return input_datetime_check(parsed, field=field_name)


def slot_validate(service: Service, start: datetime, *, now: datetime) -> datetime:
    """Check a 1-on-1 slot starting at `start` is in the future and inside availability.

    :return: the slot's end. Whether the slot is free is `seats_check`'s question.
    """
    if start <= now:
        raise InvalidInputError(
            f"The slot at {start.isoformat()} is in the past; choose a future time.",
            field="start_datetime",
        )
    end = start + timedelta(minutes=service.duration_minutes or 0)
    inside = AvailabilityWindow.objects.filter(
        service=service, start__lte=start, end__gte=end
    ).exists()
    if not inside:
        raise InvalidInputError(
            f"{service.name} is not available from {start.isoformat()} to {end.isoformat()}; "
            "choose a time inside its availability.",
            field="start_datetime",
            service_id=service.pk,
        )
    return end


def _session_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"`service_session_id` must be a session id (a positive integer), not {value!r}.",
            field="service_session_id",
        )
    return value


def _workshop_session(service: Service, scheduling: dict[str, Any], *, now) -> ServiceSession:
    if scheduling.get("service_session_id") is not None:
        session_id = _session_id(scheduling["service_session_id"])
        session = ServiceSession.objects.filter(pk=session_id).first()
        if session is None or session.service_id != service.pk:
            raise InvalidInputError(
                f"Session {session_id} is not a session of {service.name}.",
                field="service_session_id",
                service_id=service.pk,
                service_session_id=session_id,
            )
        if session.start <= now:
            raise InvalidInputError(
                f"Session {session_id} of {service.name} has already started.",
                field="service_session_id",
                service_session_id=session_id,
            )
        return session
    upcoming = list(ServiceSession.objects.filter(service=service, start__gt=now)[:2])
    if not upcoming:
        raise InvalidInputError(f"{service.name} has no upcoming session.", service_id=service.pk)
    if len(upcoming) > 1:
        raise InvalidInputError(
            f"{service.name} has several upcoming sessions; name one as "
            "`scheduling_data.service_session_id`.",
            field="service_session_id",
            service_id=service.pk,
        )
    return upcoming[0]


def _node(service: Service, scheduling: dict[str, Any], *, now, in_package: bool) -> PlanNode:
    if service.kind == Kind.SESSION:
        if in_package and scheduling.get("start_datetime") is None:
            return PlanNode(service_id=service.pk, kind=service.kind)  # scheduled later
        start = start_datetime_parse(scheduling.get("start_datetime"))
        end = slot_validate(service, start, now=now)
        return PlanNode(
            service_id=service.pk,
            kind=service.kind,
            start=start,
            end=end,
            scheduling_data={"start_datetime": start.isoformat()},
        )
    if service.kind == Kind.WORKSHOP:
        session = _workshop_session(service, scheduling, now=now)
        return PlanNode(
            service_id=service.pk,
            kind=service.kind,
            session_id=session.pk,
            start=session.start,
            end=session.end,
            scheduling_data={"service_session_id": session.pk},
        )
    if service.kind == Kind.COURSE:
        return _course_node(service, now=now)
    if in_package:
        raise InvalidInputError(
            f"A package cannot contain another package or bundle ({service.name}).",
            service_id=service.pk,
        )
    return _package_node(service, scheduling, now=now)


def _course_node(service: Service, *, now: datetime) -> PlanNode:
    sessions = list(ServiceSession.objects.filter(service=service).order_by("start", "id"))
    if not sessions:
        raise InvalidInputError(f"{service.name} has no sessions yet.", service_id=service.pk)
    started = [s for s in sessions if s.start <= now]
    if started:
        raise InvalidInputError(
            f"{service.name} has already begun (session {started[0].pk} started); "
            "a course is sold before its first session.",
            service_id=service.pk,
        )
    children = tuple(
        PlanNode(
            service_id=service.pk,
            kind=service.kind,
            session_id=s.pk,
            start=s.start,
            end=s.end,
            scheduling_data={"service_session_id": s.pk},
        )
        for s in sessions
    )
    return PlanNode(service_id=service.pk, kind=service.kind, children=children)


def _package_entries(package: Service, scheduling: dict[str, Any], item_ids: set[int]):
    entries = scheduling.get("items") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInputError(
            "`scheduling_data.items` is a list of objects with a `service_id`.",
            field="scheduling_data.items",
        )
    by_service: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        service_id = entry.get("service_id")
        if service_id not in item_ids:
            raise InvalidInputError(
                f"`scheduling_data.items` names service {service_id!r}, which is not "
                f"in {package.name}.",
                field="scheduling_data.items",
                service_id=service_id,
            )
        by_service[service_id].append(entry)
    return by_service


def _package_node(package: Service, scheduling: dict[str, Any], *, now) -> PlanNode:
    items = list(package.items.select_related("item_service").order_by("id"))
    if not items:
        raise InvalidInputError(f"{package.name} contains nothing yet.", service_id=package.pk)
    inactive = [item.item_service for item in items if not item.item_service.active]
    if inactive:
        raise InvalidInputError(
            f"{package.name} contains {inactive[0].name}, which is no longer offered.",
            service_id=package.pk,
            inactive_service_ids=[s.pk for s in inactive],
        )
    entries = _package_entries(package, scheduling, {item.item_service_id for item in items})
    children: list[PlanNode] = []
    for item in items:
        wanted = entries.get(item.item_service_id, [])
        if len(wanted) > item.quantity:
            raise InvalidInputError(
                f"{package.name} holds {item.quantity} of {item.item_service.name}; "
                f"`scheduling_data.items` schedules {len(wanted)}.",
                field="scheduling_data.items",
                service_id=item.item_service_id,
            )
        for unit in range(item.quantity):
            entry = wanted[unit] if unit < len(wanted) else {}
            children.append(_node(item.item_service, entry, now=now, in_package=True))
    _slots_disjoint(children)
    return PlanNode(
        service_id=package.pk,
        kind=package.kind,
        scheduling_data=scheduling,
        children=tuple(children),
    )


def _slots_disjoint(nodes: list[PlanNode]) -> None:
    slots = sorted((n for n in nodes if n.needs_slot), key=lambda n: n.start)
    for before, after in itertools.pairwise(slots):
        if after.start < before.end:
            raise InvalidInputError(
                f"Two sessions of this purchase overlap at {after.start.isoformat()}.",
                field="scheduling_data.items",
            )


def booking_plan_build(
    *, service_id: int | None, kind: str, scheduling_data: dict[str, Any] | None
) -> tuple[Service, PlanNode]:
    """Validate a purchase of `service_id` as a `kind` and plan its bookings.

    Raises `InvalidInputError` (422) for a bad request: an unknown, inactive or
    other-kind service, a slot in the past or outside availability, a session
    of another service, a package with an inactive item, a bad date and time.
    """
    if service_id is None:
        raise InvalidInputError("A booking purchase names a `service_id`.", field="service_id")
    service = Service.objects.filter(pk=service_id).first()
    if service is None or not service.active:
        raise InvalidInputError(
            f"No bookable service with id {service_id}.", field="service_id", service_id=service_id
        )
    if service.kind != kind:
        raise InvalidInputError(
            f"{service.name} is a {service.get_kind_display()}, not a "
            f"{Kind(kind).label if kind in Kind.values else kind}.",
            field="service_id",
            service_id=service_id,
            kind=service.kind,
        )
    scheduling = scheduling_data or {}
    now = timezone.now()
    plan = replace(
        _node(service, scheduling, now=now, in_package=False), scheduling_data=scheduling
    )
    # A courtesy answer before the order exists; `seat_holds_create` decides under the lock.
    seats_check(seat_needs(plan), now=now)
    return service, plan
