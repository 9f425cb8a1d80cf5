# Bindery's image: one image runs web, workers, beat and Flower, chosen by command.
#   web:     (default) gunicorn -c gunicorn.conf.py wsgi:app
#   build:   celery -A worker worker -Q build -P prefork
#   launch:  celery -A worker worker -Q launch -P gevent -c 500
#   beat:    celery -A worker beat
#   flower:  celery -A worker flower
# The base is a build argument so the image can be built offline from a local Debian base:
#   podman build --network host --build-arg BASE=localhost/bindery-base:bookworm -t bindery .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS deps
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt dumb-init==1.2.5

FROM ${BASE}
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    BINDERY_DATA_DIR=/var/lib/bindery
COPY --from=deps /opt/venv /opt/venv
WORKDIR /srv/bindery
COPY app/ app/
COPY tasks/ tasks/
COPY providers/ providers/
COPY templates/ templates/
COPY static/ static/
COPY celeryconfig.py wsgi.py worker.py gunicorn.conf.py flowerconfig.py ./
RUN pip check \
 && python -c "import app, app.runner, tasks.chain, tasks.steps.build, tasks.steps.launch, providers, celeryconfig; from app import create_app" \
 && useradd --system --uid 10001 --home-dir /var/lib/bindery --create-home bindery
USER bindery
EXPOSE 8585
ENTRYPOINT ["dumb-init", "--"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
