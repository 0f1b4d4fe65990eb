"""The `containerd-py` command: containerd's flags, the daemon by default."""

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from containerd_py import VERSION, config

USAGE = "containerd-py [global options] [command]"
LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="containerd-py",
        usage=USAGE,
        description="containerd-py: a container daemon speaking containerd's v1 gRPC API",
    )
    p.add_argument("-c", "--config", help="path to the configuration file")
    p.add_argument(
        "-l",
        "--log-level",
        help="set the logging level [trace, debug, info, warn, error, fatal, panic]",
    )
    p.add_argument("-a", "--address", help="address for containerd's GRPC server")
    p.add_argument("--root", help="containerd root directory")
    p.add_argument("--state", help="containerd state directory")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    commands = p.add_subparsers(dest="command", metavar="command")
    publish = commands.add_parser(
        "publish", prog="containerd-py publish", help="binary to publish events to containerd"
    )
    publish.add_argument("--namespace", default="", help="namespace to publish to")
    publish.add_argument("--topic", default="", help="topic of the event")
    return p


def _set_title() -> None:
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("containerd-py")
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        print(f"containerd-py stacklab {VERSION}")
        return 0
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"containerd-py: {e}", file=sys.stderr)
        return 1
    if args.root:
        cfg.root = args.root
    if args.state:
        cfg.state = args.state
    if args.address:
        cfg.address = args.address
    if args.command == "publish":
        from containerd_py import publish  # grpc and the events messages, not the daemon

        return publish.main(cfg.address, args.topic, args.namespace)
    level = (args.log_level or cfg.debug_level).lower()
    if level not in LEVELS:
        print(f'containerd-py: not a valid log level "{level}"', file=sys.stderr)
        return 1
    logging.basicConfig(
        level=LEVELS[level],
        format="time=%(asctime)s level=%(levelname)s msg=%(message)s",
        stream=sys.stderr,
    )
    _set_title()
    from containerd_py.server import Daemon  # grpc and the stores: only when serving

    daemon = Daemon(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
