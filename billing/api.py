from ninja import Router

catalog_router = Router(tags=["catalog"])
payments_router = Router(tags=["payments"])
