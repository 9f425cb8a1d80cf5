"""Flower reads this file from its working directory: its login comes from Bindery's config,
so `make run` and the chart protect Flower the same way (and the password is never on a command line)."""

from app.config import load_config

_settings = load_config()
if _settings["flower_basic_auth"]:
    basic_auth = [_settings["flower_basic_auth"]]
