# The one image of docker-compose.yml: portal, worker, beat, heartbeat ingester, runtimes and the
# demo producer and subscriber all run it with a different command. It runs as an unprivileged
# user; the only place it writes is /data (beat's schedule, runtimes' config caches, the demo keys).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=meshadmin.settings.production \
    MESHADMIN_DATA_DIR=/data

RUN groupadd --system --gid 10001 meshadmin \
    && useradd --system --uid 10001 --gid meshadmin --home-dir /app --no-create-home --shell /usr/sbin/nologin meshadmin

WORKDIR /app
COPY . .
# Editable: the code runs from /app, where manage.py, templates/ and static/ are.
RUN pip install -e . \
    && SECRET_KEY=collectstatic-only DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
       python manage.py collectstatic --no-input -v 0 \
    && mkdir -p /data && chown meshadmin:meshadmin /data

USER meshadmin:meshadmin
EXPOSE 8000 8100 8700
