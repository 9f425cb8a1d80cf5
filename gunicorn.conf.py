"""gunicorn settings: gevent workers so each open event stream costs a greenlet.

The web's start is where an operator looks, under `make run`, systemd or a pod alike, so the
warnings about a service open beyond loopback without its limits are printed here, once.
"""

import sys

from app.config import exposure_warnings, load_config

_settings = load_config()
for _warning in exposure_warnings(_settings):
    print(f"bindery: WARNING: {_warning}. See docs/operating.md, before you open it to the world.",
          file=sys.stderr, flush=True)

bind = f"{_settings['listen_address']}:{_settings['port']}"
worker_class = "gevent"
workers = _settings["web_workers"]
worker_connections = 10000
# Streams are long-lived; a worker restart is announced by its keepalives stopping.
timeout = 60
graceful_timeout = 10
max_requests = 0
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
proc_name = "bindery-web"


def child_exit(server, worker):  # gunicorn calls this hook with these names
    from app.metrics import mark_process_dead

    mark_process_dead(worker.pid)
