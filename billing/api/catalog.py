"""The catalog: every purchase type and what it sells, from its plugin."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from billing.schemas import CatalogOut, PurchaseTypeOut
from purchasables.registry import registry

router = Router(tags=["catalog"])


@router.get("/", response=CatalogOut, auth=None)
def catalog_list(request: HttpRequest):
    return CatalogOut(
        purchase_types=[
            PurchaseTypeOut(
                name=spec.name,
                order_type=spec.order_type,
                label=spec.label,
                description=spec.description,
                sold_as=list(spec.sold_as),
                catalog=registry.catalog(spec.name),
            )
            for spec in registry.purchase_types()
        ]
    )
