#!/bin/sh
# Tollgate's one entrypoint: the image's ENTRYPOINT, compose's and Kubernetes'
# commands, and what an operator runs on a plain host (docs/operations.md).
#
#   migrate       one-shot: configuration check, then apply the migrations
#   collectstatic one-shot: copy static files to STATIC_ROOT (the image does it at build)
#   web           gunicorn (gunicorn.conf.py: workers, JSON logs, metrics)
#   worker        the task queue's workers, without the schedules
#   scheduler     one task-queue cluster that also runs the schedules; run exactly one
#   check         the configuration check alone (`check --deploy`, warnings are errors)
#   healthcheck web|worker   container health: /readyz of the local web process, or a
#                 running task-queue cluster on this host
#   anything else is run as `django-admin ...` (e.g. `createsuperuser`, `reconcile`)
set -eu

export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-platform_core.settings}"
here="$(cd "$(dirname "$0")" && pwd)"
gunicorn_conf="${GUNICORN_CONF:-$here/../gunicorn.conf.py}"

check() {
    django-admin check --deploy --fail-level WARNING
}

command="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$command" in
    check)
        check
        ;;
    migrate)
        check
        exec django-admin migrate --noinput "$@"
        ;;
    collectstatic)
        exec django-admin collectstatic --noinput "$@"
        ;;
    web)
        check
        exec gunicorn --config "$gunicorn_conf" "$@" platform_core.wsgi
        ;;
    worker)
        check
        Q_SCHEDULER=0 exec django-admin qcluster "$@"
        ;;
    scheduler)
        check
        Q_SCHEDULER=1 Q_WORKERS="${SCHEDULER_WORKERS:-1}" exec django-admin qcluster "$@"
        ;;
    healthcheck)
        case "${1:-web}" in
            web)
                exec python - <<'PY'
import os, sys, urllib.request
hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
host = os.environ.get("PROBE_HOST") or next((h.lstrip(".") for h in hosts if h != "*"), "localhost")
port = os.environ.get("BIND", "0.0.0.0:8000").rsplit(":", 1)[-1]
request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers={"Host": host})
try:
    urllib.request.urlopen(request, timeout=3).read()
except Exception as exc:
    sys.exit(f"not ready: {exc}")
PY
                ;;
            worker)
                exec django-admin worker_alive
                ;;
            *)
                echo "healthcheck: web or worker" >&2
                exit 2
                ;;
        esac
        ;;
    *)
        exec django-admin "$command" "$@"
        ;;
esac
