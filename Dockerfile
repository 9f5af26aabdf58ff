# syntax=docker/dockerfile:1
#
# The engine's production image: one image, three roles chosen by the compose `command:`
# (`billing migrate`, `billing api`, `billing worker`). The embedded dev stack (`billing dev`) is
# not installed here: production talks to real PostgreSQL, Temporal and Stripe.

# Pinned to a patch release and a Debian suite so a rebuild cannot silently change the runtime.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A virtualenv is copied whole into the runtime stage, leaving build leftovers behind.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# No extras: the embedded servers and test tools stay out of the production image.
RUN pip install .


FROM python:3.11.14-slim-bookworm

# Production by default, so config.Settings refuses dev defaults (e.g. the API key pepper).
# The catalog file is data, not part of the installed package: it is copied next to the app.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BILLING_ENVIRONMENT=production \
    BILLING_CATALOG_PATH=/app/catalog/plans.toml

# A fixed numeric uid/gid so orchestrators can enforce runAsNonRoot and volume ownership.
RUN groupadd --system --gid 10001 billing \
    && useradd --system --uid 10001 --gid billing --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin billing

COPY --from=build /opt/venv /opt/venv
COPY catalog /app/catalog
WORKDIR /app
# Tenant exports (ADR 0016): a named volume mounted here takes this owner.
RUN mkdir -p /var/lib/billing/exports && chown 10001:10001 /var/lib/billing/exports

USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["billing"]
CMD ["api"]
