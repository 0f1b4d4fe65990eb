"""Publish the task events (/tasks/create, /tasks/start, /tasks/exit, /tasks/delete, ...) to
containerd, like the shim package's publisher in containerd (runtime/v2/shim/publisher.go):
over ttrpc to `containerd.services.events.ttrpc.v1.Events/Forward` at `$TTRPC_ADDRESS`, which
containerd 1.6 (and containerd-py) set for their shims; without it, or when that fails, by
running `<publish-binary> --address <containerd> publish --topic T --namespace NS` with the
event, a protobuf Any, on stdin — what cmd/containerd/command/publish.go reads.

Events go out in order from one thread, so /tasks/exit always precedes /tasks/delete.
"""

import os
import queue
import subprocess
import sys
import threading

from google.protobuf import message

from shim.api import typeurl
from shim.api.services.ttrpc.events.v1.events_pb2 import Envelope, ForwardRequest
from shim.reaper import Reaper, wait_child
from shim.ttrpc.client import Client as TTRPCClient
from shim.ttrpc.errors import TTRPCError

FORWARD_SERVICE = "containerd.services.events.ttrpc.v1.Events"


class Publisher:
    def __init__(
        self, binary: str, address: str, namespace: str, reaper: Reaper | None = None
    ) -> None:
        self.reaper = reaper
        self.binary = binary
        self.address = address
        self.namespace = namespace
        self.ttrpc_address = os.environ.get("TTRPC_ADDRESS", "")
        self._client: TTRPCClient | None = None
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def publish(self, topic: str, event: message.Message) -> None:
        self._queue.put((topic, typeurl.marshal_any(event).SerializeToString()))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def argv(self, topic: str) -> list[str]:
        return [self.binary, "--address", self.address, "publish", "--topic", topic,
                "--namespace", self.namespace]  # fmt: skip

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, data = item
            try:
                if not self.forward(topic, data) and self.binary:
                    self.send(topic, data)
            except Exception as err:  # an event lost is logged, never fatal to the shim
                try:
                    print(f"shim: publish {topic}: {err}", file=sys.stderr, flush=True)
                except OSError:
                    pass  # stderr is containerd's log fifo, and containerd is gone

    def forward(self, topic: str, data: bytes) -> bool:
        """Events.Forward over ttrpc, reconnecting once; False if there is no ttrpc address or
        it cannot be reached (then the publish binary is the way)."""
        if not self.ttrpc_address:
            return False
        envelope = Envelope(namespace=self.namespace, topic=topic)
        envelope.timestamp.GetCurrentTime()
        envelope.event.ParseFromString(data)
        request = ForwardRequest(envelope=envelope).SerializeToString()
        for _ in range(2):
            try:
                if self._client is None or self._client.closed:
                    self._client = TTRPCClient.connect(
                        self.ttrpc_address.removeprefix("unix://"), 2
                    )
                self._client.call(FORWARD_SERVICE, "Forward", request, timeout=5)
                return True
            except (OSError, TTRPCError):
                if self._client is not None:
                    self._client.close()
                self._client = None
        return False

    def send(self, topic: str, data: bytes) -> None:
        proc = subprocess.Popen(
            self.argv(topic),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(data)
        proc.stdin.close()
        err = proc.stderr.read()
        proc.stderr.close()
        status = wait_child(proc, self.reaper)
        if status != 0:
            raise OSError(f"{self.binary} publish exited {status}: {err.decode().strip()}")
