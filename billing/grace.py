"""Grace windows: what a window is for (its kind), the domain vocabulary the grace workflow,
its activities and the API share."""

from __future__ import annotations

# A soft-capped metric over its quota: at expiry the metric is blocked for the period.
SOFT_CAP = "soft_cap"
# An unpaid invoice: at expiry the tenant is suspended until the invoice is paid.
PAYMENT = "payment"
