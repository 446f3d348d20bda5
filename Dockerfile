# One image for every Tollgate process: web (gunicorn), worker (qcluster) and,
# in development, localstripe. See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=platform_core.settings

WORKDIR /app

# The `local` extra adds localstripe (GPL-3.0, a development tool); a production
# image would install `.` alone.
COPY . .
RUN pip install '.[local]' \
    && useradd --create-home --uid 10001 tollgate \
    && mkdir -p /app/var \
    && chown tollgate /app/var

USER tollgate
EXPOSE 8000
# Workers, bind address and logging: gunicorn.conf.py (WEB_CONCURRENCY sets the count).
CMD ["gunicorn", "platform_core.wsgi"]
