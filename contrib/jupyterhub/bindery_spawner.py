"""A JupyterHub spawner mixin: the image comes from ``user_options``, as BinderHub's does.

Bindery's ``jupyterhub`` launcher starts named servers with ``user_options``
``{image, token, repo_url, binder_ref_url, default_url, cors_allow_origin, ...}``; ``default_url``
(Bindery's setting of that name, e.g. ``/lab``) becomes the spawner's ``default_url``, the page the
server's root redirects to, as BinderHub's ``singleuser.defaultUrl`` does; ``cors_allow_origin``
(Bindery's setting) becomes the server's ``allow_origin``, as BinderHub's
``BinderSpawner.cors_allow_origin`` does, so one setting opens Bindery and the servers it
launches.  Mix this in front of any spawner that has an ``image`` trait (KubeSpawner, DockerSpawner) in the
hub's config, with this file's directory on the hub's ``PYTHONPATH``::

    from bindery_spawner import BinderSpawnerMixin
    from kubespawner import KubeSpawner

    class BinderSpawner(BinderSpawnerMixin, KubeSpawner):
        pass

    c.JupyterHub.spawner_class = BinderSpawner

It runs in the hub, not in Bindery: it imports nothing from Bindery, so it can be
copied into a hub image on its own (see README.md beside it).
"""

from __future__ import annotations

import re
from typing import Any

_IMAGE = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,511}\Z")
# a path on the server, as Bindery's default_url setting allows (no braces: the spawner formats it)
_PATH = re.compile(r"\A/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,200}\Z")
# an origin as Bindery's cors_allow_origin allows: * or scheme://host[:port], nothing else
_ORIGIN = re.compile(r"\A(\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)\Z")
# user_options keys passed to the server as BINDER_* variables (what BinderHub's spawner sets)
_ENV_KEYS = ("repo_url", "binder_ref_url", "binder_launch_host", "binder_request",
             "binder_persistent_request")


class BinderSpawnerMixin:
    """Take the image from ``user_options['image']`` and expose the binder links in the env."""

    user_options: dict[str, Any]
    image: str
    default_url: str

    def start(self) -> Any:
        image = self.user_options.get("image")
        if image:
            if not isinstance(image, str) or not _IMAGE.match(image):
                raise ValueError("user_options['image'] is not an image name")
            self.image = image
        default_url = self.user_options.get("default_url")
        if default_url:
            if not isinstance(default_url, str) or not _PATH.match(default_url):
                raise ValueError("user_options['default_url'] is not a path on the server")
            self.default_url = default_url
        return super().start()  # type: ignore[misc]

    async def check_allowed(self, image: str) -> str:
        """DockerSpawner refuses a user_options image unless it is in allowed_images; the image
        here was chosen by Bindery (the hub's service), so it is taken when it is an image name."""
        if not _IMAGE.match(image):
            raise ValueError("user_options['image'] is not an image name")
        return image

    def get_args(self) -> list[str]:
        """The spawner's args, plus the origins Bindery's ``cors_allow_origin`` lets use the server,
        as BinderHub's spawner passes them: ``allow_origin``, for ``*`` also ``allow_origin_pat``,
        in the old (NotebookApp) and new (ServerApp) spelling, since the image may run either."""
        args: list[str] = super().get_args()  # type: ignore[misc]
        origin = self.user_options.get("cors_allow_origin")
        if not origin:
            return args
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise ValueError("user_options['cors_allow_origin'] is not * or an origin")
        for app in ("NotebookApp", "ServerApp"):
            args.append(f"--{app}.allow_origin={origin}")
            if origin == "*":  # allow_origin alone leaves single files closed (jupyter/notebook#5898)
                args.append(f"--{app}.allow_origin_pat=.*")
        return args

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()  # type: ignore[misc]
        for key in _ENV_KEYS:
            value = self.user_options.get(key)
            if isinstance(value, str) and value:
                env["BINDER_" + key.upper().removeprefix("BINDER_")] = value
        return env
