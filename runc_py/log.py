"""runc's logging convention: logrus lines to stderr, or to `--log FILE` as text or JSON.

containerd's shim reads the last JSON line of its `--log` file to explain a failure, so the
format (`{"level","msg","time"}`) matters; with `--log` set, errors also go to stderr in plain.
"""

import os
import sys
import time

_fd: int | None = None  # the --log file, opened once: the init loses its path at pivot_root
_format = "text"
_debug = False


def setup(path: str | None, fmt: str, debug: bool) -> None:
    global _fd, _format, _debug
    if fmt not in ("text", "json"):
        raise ValueError(f"invalid log-format: {fmt}")
    _format, _debug = fmt, debug
    if path:
        try:
            _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            _fd = None  # logrus too falls back to stderr


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _line(level: str, msg: str) -> str:
    if _format == "json":
        from stacklab import jsonfast

        return jsonfast.dumps({"level": level, "msg": msg, "time": _now()}, (",", ":"))
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'time="{_now()}" level={level} msg="{quoted}"'


def _emit(level: str, msg: str) -> None:
    line = _line(level, msg) + "\n"
    if _fd is not None:
        try:
            os.write(_fd, line.encode())
            return
        except OSError:
            pass
    sys.stderr.write(line)
    sys.stderr.flush()


def is_debug() -> bool:
    return _debug


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", msg)


def warning(msg: str) -> None:
    _emit("warning", msg)


def error(msg: str) -> None:
    """An error that ends the command: logged, and also on stderr in plain when logging to a file."""
    _emit("error", msg)
    if _fd is not None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
