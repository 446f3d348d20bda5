"""Booking factories: services of each kind, sessions, availability, package contents."""

from datetime import timedelta

import factory
from django.utils import timezone

from bookings.models import AvailabilityWindow, PackageItem, Service, ServiceSession


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service

    name = factory.Sequence(lambda n: f"Service {n}")
    kind = Service.Kind.WORKSHOP
    price = 5000
    currency = "usd"
    duration_minutes = factory.LazyAttribute(
        lambda s: 60 if s.kind == Service.Kind.SESSION else None
    )


class ServiceSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceSession

    service = factory.SubFactory(ServiceFactory)
    start = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))
    end = factory.LazyAttribute(lambda s: s.start + timedelta(hours=2))
    capacity = 10


class AvailabilityWindowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AvailabilityWindow

    service = factory.SubFactory(ServiceFactory, kind=Service.Kind.SESSION)
    start = factory.LazyFunction(lambda: timezone.now() + timedelta(days=3))
    end = factory.LazyAttribute(lambda w: w.start + timedelta(hours=8))


class PackageItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PackageItem

    package = factory.SubFactory(ServiceFactory, kind=Service.Kind.PACKAGE)
    item_service = factory.SubFactory(ServiceFactory)
    quantity = 1
