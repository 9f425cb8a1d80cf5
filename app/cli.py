"""``python -m app.cli``: small operator commands that need no running service."""

from __future__ import annotations

import argparse
import json
import sys

from app.config import ConfigSchema, load_config, markdown_reference
from app.errors import ConfigError

SECRET_SETTINGS = {"registry_password", "github_token", "gitlab_token"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bindery")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config", help="print the validated configuration (secrets hidden)")
    commands.add_parser("config-reference", help="print the README's configuration table")
    args = parser.parse_args(argv)
    if args.command == "config-reference":
        sys.stdout.write(markdown_reference())
        return 0
    try:
        config = ConfigSchema().dump(load_config())
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    shown = {k: ("***" if k in SECRET_SETTINGS and v else v) for k, v in config.items()}
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
