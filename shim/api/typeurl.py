"""google.protobuf.Any the way containerd 1.6 fills it in (its `typeurl` package).

containerd names a protobuf message in an Any by its bare full name, e.g.
`containerd.runc.v1.Options` or `containerd.events.TaskExit`, where `Any.Pack` would write
`type.googleapis.com/containerd.runc.v1.Options`. containerd 1.6 looks the prefixed form up
and fails, so everything we send carries the bare name; what we receive may carry either.
"""

from typing import TypeVar

from google.protobuf import any_pb2, descriptor_pool, message, message_factory

M = TypeVar("M", bound=message.Message)

_PREFIX = "type.googleapis.com/"


def type_url(msg: message.Message) -> str:
    """The type_url containerd writes for `msg`: its full protobuf name."""
    return msg.DESCRIPTOR.full_name


def marshal_any(msg: message.Message) -> any_pb2.Any:
    """`msg` in an Any, named as containerd names it."""
    return any_pb2.Any(type_url=type_url(msg), value=msg.SerializeToString())


def full_name(any_msg: any_pb2.Any) -> str:
    """The message name in an Any's type_url, with or without a URL prefix."""
    url = any_msg.type_url
    return url[len(_PREFIX) :] if url.startswith(_PREFIX) else url.rsplit("/", 1)[-1]


def unmarshal_any(any_msg: any_pb2.Any, cls: type[M]) -> M:
    """The `cls` message in `any_msg`; ValueError if the Any holds another type."""
    name = full_name(any_msg)
    if name != cls.DESCRIPTOR.full_name:
        raise ValueError(f"Any holds {any_msg.type_url!r}, not {cls.DESCRIPTOR.full_name}")
    out = cls()
    out.ParseFromString(any_msg.value)
    return out


def unmarshal_any_registered(any_msg: any_pb2.Any) -> message.Message:
    """The message in `any_msg`, of whichever imported type its type_url names;
    KeyError if no imported _pb2 module defines it."""
    desc = descriptor_pool.Default().FindMessageTypeByName(full_name(any_msg))
    out = message_factory.GetMessageClass(desc)()
    out.ParseFromString(any_msg.value)
    return out
