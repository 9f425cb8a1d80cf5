"""``python -m app.cli``: small operator commands that need no running service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.config import ConfigSchema, load_config, markdown_reference
from app.errors import ConfigError
from app.launch_events import count_launches, event_file, read_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bindery")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config", help="print the validated configuration (secrets hidden)")
    commands.add_parser("config-reference", help="print docs/configuration.md, generated from the schema")
    count = commands.add_parser("events", help="count launches of a repository from the launch event file")
    count.add_argument("repo", help="provider/spec prefix, e.g. gh/org/repo or git/<escaped url>")
    count.add_argument("--days", type=float, default=30, help="look back this many days (default 30)")
    count.add_argument("--file", help="the event file (default: launch_event_file from the config)")
    args = parser.parse_args(argv)
    if args.command == "events":
        return _count_events(args)
    if args.command == "config-reference":
        sys.stdout.write(markdown_reference())
        return 0
    try:
        config = ConfigSchema().dump(load_config())
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    fields = ConfigSchema().fields
    shown = {k: ("***" if fields[k].metadata.get("secret") and v else v) for k, v in config.items()}
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _count_events(args: argparse.Namespace) -> int:
    try:
        path = Path(args.file) if args.file else event_file(load_config())
        total = count_launches(read_file(path), args.repo, args.days)
    except (ConfigError, OSError, ValueError) as err:
        print(f"bindery events: {err}", file=sys.stderr)
        return 2
    print(f"{total} launches of {args.repo} in the last {args.days:g} days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
