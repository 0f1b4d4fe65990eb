"""Device rules on cgroup v2 (runc's libcontainer/cgroups/devices: devicefilter.go and ebpf.go).

cgroup2 has no devices.allow: the kernel asks an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup, about every open or mknod of a device node.
This compiles config.json's device rules into such a program and attaches it.
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYS_bpf = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
# struct bpf_cgroup_dev_ctx: access_type = access << 16 | type, then major, then minor
DEV_TYPES = {"b": 1, "c": 2}
ACCESS = {"m": 1, "r": 2, "w": 4}

# the few instructions the program needs (linux/bpf_common.h, linux/bpf.h)
LDX_W = 0x61  # dst = *(u32 *)(src + off)
MOV_X = 0xBF  # dst = src
MOV_K = 0xB7  # dst = imm
AND_K = 0x57  # dst &= imm
RSH_K = 0x77  # dst >>= imm
JNE_K = 0x55  # if dst != imm: pc += off
EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule(rule: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """One rule's checks as (code, dst, src, imm); each JNE jumps to the next rule."""
    checks: list[tuple[int, int, int, int]] = []
    kind = rule.get("type") or "a"
    if kind != "a":
        if kind not in DEV_TYPES:
            raise ValueError(f"invalid device type {kind!r}")
        checks.append((JNE_K, 2, 0, DEV_TYPES[kind]))
    access = 0
    for a in rule.get("access") or "rwm":
        if a not in ACCESS:
            raise ValueError(f"invalid device access {a!r}")
        access |= ACCESS[a]
    if access != 7:  # the rule covers a request only if it allows every kind asked for
        checks.append((MOV_X, 6, 3, 0))  # r6 = what is asked for beyond the rule's access
        checks.append((AND_K, 6, 0, ~access & 7))
        checks.append((JNE_K, 6, 0, 0))
    for reg, key in ((4, "major"), (5, "minor")):
        n = rule.get(key)
        if n is not None and n >= 0:
            checks.append((JNE_K, reg, 0, int(n)))
    return checks


def compile_rules(rules: list[dict[str, Any]]) -> bytes:
    """The program: the last rule that covers a request decides it, as with v1's
    devices.allow/deny written in order; with none, the device is allowed (v1's default)."""
    prog = [
        _insn(LDX_W, 2, 1, 0),  # r2 = access_type
        _insn(MOV_X, 3, 2),
        _insn(AND_K, 2, imm=0xFFFF),  # r2 = type
        _insn(RSH_K, 3, imm=16),  # r3 = access
        _insn(LDX_W, 4, 1, 4),  # r4 = major
        _insn(LDX_W, 5, 1, 8),  # r5 = minor
    ]
    for rule in reversed(rules):
        checks = _rule(rule)
        length = len(checks) + 2
        for i, (code, dst, src, imm) in enumerate(checks):
            skip = length - i - 1 if code == JNE_K else 0
            prog.append(_insn(code, dst, src, skip, imm))
        prog.append(_insn(MOV_K, 0, imm=1 if rule.get("allow") else 0))
        prog.append(_insn(EXIT))
        if not checks:
            return b"".join(prog)  # it covers everything: the rules before it never apply
    prog.append(_insn(MOV_K, 0, imm=1))
    prog.append(_insn(EXIT))
    return b"".join(prog)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ret = int(libc.syscall(SYS_bpf, cmd, attr, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return ret


def _load(insns: ctypes.Array[ctypes.c_char], log: ctypes.Array[ctypes.c_char] | None) -> int:
    license = ctypes.create_string_buffer(b"Apache")
    attr = ctypes.create_string_buffer(128)  # union bpf_attr, BPF_PROG_LOAD's part
    struct.pack_into(
        "<IIQQIIQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        (len(insns) - 1) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license),
        1 if log else 0,
        len(log) if log else 0,
        ctypes.addressof(log) if log else 0,
    )
    return _bpf(BPF_PROG_LOAD, attr)


def attach(cgroup_dir: str, rules: list[dict[str, Any]]) -> None:
    """Load the rules' program and attach it to the cgroup directory."""
    insns = ctypes.create_string_buffer(compile_rules(rules))
    try:
        prog = _load(insns, None)
    except OSError as e:
        log = ctypes.create_string_buffer(1 << 20)  # load again, to say why
        try:
            _load(insns, log)
        except OSError:
            pass
        verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise OSError(e.errno, f"{e.strerror}: {' '.join(verifier)}") from None
    try:
        target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(128)  # BPF_PROG_ATTACH's part
            struct.pack_into("<IIII", attr, 0, target, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            _bpf(BPF_PROG_ATTACH, attr)
        finally:
            os.close(target)
    finally:
        os.close(prog)  # the cgroup holds the program now
