"""The namespace types of config.json (runtime-spec config-linux.md#namespaces): their clone
flags, their files under /proc/PID/ns, and the order runc joins them in. A module of its own
(no ctypes) because `create` needs the names before it forks, and the init the rest after."""

# sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
FILES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}
# joined in this order: the user namespace first (it owns the rest), the mount namespace last
JOIN_ORDER = ["user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount"]
