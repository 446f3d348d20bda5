from django.apps import AppConfig


class GiftCardsConfig(AppConfig):
    name = "tollgate_gift_cards"
    verbose_name = "Gift cards"
    default_auto_field = "django.db.models.BigAutoField"
