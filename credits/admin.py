"""Staff views of the credit ledger, and the grant/adjust form.

The rule: the admin never edits a ledger entry or a balance. Entries and
accounts are view-only here; a correction is a new entry, written by the
grant/adjust form through `credits_grant_by_staff` (the same service as the
staff API), for staff holding `credits.add_credittransaction`. Only credit
packs and subscription plans, which are catalogue data, are editable.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from credits.models import (
    CreditAccount,
    CreditDraw,
    CreditFreeze,
    CreditLot,
    CreditPack,
    CreditTransaction,
    Plan,
)
from credits.selectors import credits_balance_get
from credits.services import LEDGER_ENTRY_MAX, MEMO_MAX_LENGTH, credits_grant_by_staff
from kernel.errors import DomainError

GRANT_PERMISSION = "credits.add_credittransaction"


class ViewOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class GrantForm(forms.Form):
    user = forms.CharField(max_length=150, help_text="The user's id or username.", label="User")
    amount = forms.IntegerField(
        min_value=-LEDGER_ENTRY_MAX,
        max_value=LEDGER_ENTRY_MAX,
        help_text="Credits: positive grants, negative takes back (never below a zero balance).",
    )
    memo = forms.CharField(
        max_length=MEMO_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why: kept on the entry and in the audit log.",
    )

    category = forms.ChoiceField(
        choices=CreditLot.Category.choices,
        initial=CreditLot.Category.PROMOTIONAL,
        required=False,
        help_text="A grant's lot (promotional when not said): promotional credits are "
        "spent before paid ones.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        help_text="When what is left of a grant expires (YYYY-MM-DD HH:MM); empty for never.",
    )

    def clean_user(self) -> int:
        given = self.cleaned_data["user"].strip()
        users = get_user_model().objects
        user = users.filter(pk=int(given)).first() if given.isdigit() else None
        if user is None:
            user = users.filter(**{users.model.USERNAME_FIELD: given}).first()
        if user is None:
            raise forms.ValidationError("No such user.")
        return user.pk

    def clean_category(self) -> str:
        return self.cleaned_data["category"] or CreditLot.Category.PROMOTIONAL

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("A grant or adjustment moves at least one credit.")
        return amount


class CreditLotInline(admin.TabularInline):
    model = CreditLot
    fk_name = "account"
    fields = ("id", "category", "source", "amount", "remaining", "expires_at", "created_at")
    readonly_fields = fields
    ordering = ("-id",)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class CreditDrawInline(admin.TabularInline):
    """The lots an entry took credits from (> 0) or gave them back to (< 0)."""

    model = CreditDraw
    fk_name = "entry"
    fields = ("lot", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class LotDrawInline(CreditDrawInline):
    """The entries that took credits from this lot (> 0) or gave them back (< 0)."""

    fk_name = "lot"
    fields = ("entry", "amount")
    readonly_fields = fields


@admin.register(CreditAccount)
class CreditAccountAdmin(ViewOnlyAdmin):
    list_display = ("id", "user", "balance", "frozen", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    readonly_fields = ("user", "balance", "frozen", "updated_at")
    inlines = [CreditLotInline]

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        account = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "grant_url": (
                reverse("admin:credits_credittransaction_grant") + f"?user={account.user_id}"
                if account is not None and request.user.has_perm(GRANT_PERMISSION)
                else None
            ),
            "entries_url": (
                reverse("admin:credits_credittransaction_changelist")
                + f"?account__id__exact={object_id}"
            ),
        }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(CreditFreeze)
class CreditFreezeAdmin(ViewOnlyAdmin):
    """Credits held while a purchase is disputed; made and released only by the services."""

    list_display = (
        "id",
        "account",
        "reference",
        "amount",
        "requested",
        "created_at",
        "released_at",
    )
    list_select_related = ("account__user",)
    list_filter = (("released_at", admin.EmptyFieldListFilter),)
    search_fields = ("reference", "account__user__username")
    readonly_fields = (
        "account",
        "reference",
        "requested",
        "amount",
        "memo",
        "created_at",
        "released_at",
    )


@admin.register(CreditLot)
class CreditLotAdmin(ViewOnlyAdmin):
    """Credits that came in together and what is left of them; kept only by the services."""

    list_display = (
        "id",
        "account",
        "category",
        "source",
        "source_order_id",
        "amount",
        "remaining",
        "expires_at",
        "cost_basis",
        "currency",
        "created_at",
    )
    list_select_related = ("account__user",)
    list_filter = ("category", "source", ("expires_at", admin.EmptyFieldListFilter))
    search_fields = ("account__user__username", "=source_order_id")
    readonly_fields = (
        "account",
        "entry",
        "category",
        "source",
        "source_order_id",
        "amount",
        "remaining",
        "expires_at",
        "cost_basis",
        "currency",
        "created_at",
    )
    inlines = [LotDrawInline]


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ViewOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "account",
        "amount",
        "kind",
        "reference",
        "balance_after",
        "created_by",
    )
    list_filter = ("kind",)
    list_select_related = ("account__user", "created_by")
    search_fields = ("reference", "account__user__username", "memo")
    date_hierarchy = "created_at"
    readonly_fields = (
        "account",
        "amount",
        "kind",
        "reference",
        "balance_after",
        "memo",
        "created_by",
        "created_at",
        "returns",
    )
    inlines = [CreditDrawInline]

    def get_urls(self):
        grant = self.admin_site.admin_view(self.grant_view)
        return [path("grant/", grant, name="credits_credittransaction_grant"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_grant": request.user.has_perm(GRANT_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    def grant_view(self, request: HttpRequest) -> HttpResponse:
        """Write one new entry (a grant or an adjustment) with a memo."""
        if not request.user.has_perm(GRANT_PERMISSION):
            raise PermissionDenied
        initial = {"user": request.GET.get("user", "")}
        form = GrantForm(request.POST if request.method == "POST" else None, initial=initial)
        if form.is_bound and form.is_valid():
            user_id = form.cleaned_data["user"]
            try:
                write = credits_grant_by_staff(
                    user_id=user_id,
                    amount=form.cleaned_data["amount"],
                    memo=form.cleaned_data["memo"],
                    created_by_id=request.user.pk,
                    category=form.cleaned_data["category"] or CreditLot.Category.PROMOTIONAL,
                    expires_at=form.cleaned_data["expires_at"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                entry = write.entry
                self.message_user(
                    request,
                    f"{entry.amount:+d} credits ({entry.kind}) for user {user_id}; "
                    f"the balance is now {write.balance}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:credits_credittransaction_changelist")
                    + f"?account__id__exact={entry.account_id}"
                )
        user_given = request.GET.get("user", "")
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant or adjust credits",
            "opts": self.model._meta,
            "form": form,
            "balance": (
                credits_balance_get(user_id=int(user_given)) if user_given.isdigit() else None
            ),
        }
        return TemplateResponse(request, "admin/credits/credittransaction/grant_form.html", context)


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = ("name", "credits", "price", "currency", "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("active", "currency")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "stripe_price_id",
        "amount",
        "currency",
        "interval",
        "interval_count",
        "credits_per_cycle",
        "unused_credits",
        "rollover_cap",
        "active",
    ]
    list_filter = ["active", "interval", "currency"]
    search_fields = ["name", "stripe_price_id"]
