# syntax=docker/dockerfile:1
# Tollgate's production image: web, worker, scheduler and the migrate job all run
# it, through deploy/entrypoint.sh (`docker run IMAGE migrate|web|worker|scheduler`).
# The development image (localstripe, demo data) is Dockerfile.dev.
#
# Dependencies come from requirements/production.txt (locked with hashes by
# `make lock`), installed before the code is copied, so a code change rebuilds
# only the last layers. No development tool is in it: localstripe (GPL-3.0) and
# the devstripe package are left out.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY requirements/production.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel kernel
COPY platform_core platform_core
COPY webclient webclient
COPY billing billing
COPY purchasables purchasables
COPY credits credits
COPY bookings bookings
RUN pip install --no-deps . \
    && python -c "import platform_core, billing; print('tollgate installed')"

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=platform_core.settings \
    STATIC_ROOT=/app/static \
    STATIC_MANIFEST=1 \
    Q_STATUS_DIR=/tmp/tollgate-q-status \
    GUNICORN_CONF=/app/gunicorn.conf.py
RUN useradd --create-home --uid 10001 tollgate
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py /app/gunicorn.conf.py
COPY deploy/entrypoint.sh /app/deploy/entrypoint.sh
# Static files are collected at build time (DEBUG=1 for this step only: it reads
# no secret and touches no database), hashed names for the browser's cache.
RUN DEBUG=1 django-admin collectstatic --noinput \
    && test -f /app/static/staticfiles.json
USER 10001
EXPOSE 8000
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
