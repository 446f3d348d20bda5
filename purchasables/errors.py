"""Errors a plugin raises to tell billing something it must act on."""

from kernel.errors import DomainError, ErrorCode


class FulfilmentImpossibleError(DomainError):
    """The order was paid but cannot be delivered (its seat was taken after the hold ran out).

    Raised from `tollgate_fulfil`. Billing rolls back the plugin's writes, records
    the reason on the order and refunds the payment in full automatically.
    """

    code = ErrorCode.FULFILMENT_IMPOSSIBLE
    status = 409
