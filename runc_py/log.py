"""runc's logging convention: logrus lines to stderr, or to `--log FILE` as text or JSON.

containerd's shim reads the last JSON line of its `--log` file to explain a failure, so the
format (`{"level","msg","time"}`) matters; with `--log` set, errors also go to stderr in plain.
"""

import os
import sys
import time

_path: str | None = None
_format = "text"
_debug = False


def setup(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _format, _debug
    if fmt not in ("text", "json"):
        raise ValueError(f"invalid log-format: {fmt}")
    _path, _format, _debug = path or None, fmt, debug


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
    if _path:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
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
    if _path:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
