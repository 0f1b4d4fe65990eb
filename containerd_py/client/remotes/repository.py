"""One reference's view of its registry (containerd's `dockerBase`): the hosts to try, the
URLs under `/v2/<repository>/`, and the token scopes its requests ask for."""

from collections.abc import Mapping
from urllib.parse import quote, urlencode

import httpx

from containerd_py.errdefs import NotFound

from ..reference import Reference
from .hosts import RegistryHost
from .session import Content, Session


class Repository:
    def __init__(self, session: Session, ref: Reference, hosts: list[RegistryHost]) -> None:
        self.session = session
        self.ref = ref
        self.hosts = hosts

    def hosts_with(self, *capabilities: str) -> list[RegistryHost]:
        found = [h for h in self.hosts if h.has(*capabilities)]
        if not found:
            raise NotFound(f"no {'+'.join(capabilities)} hosts for {self.ref.host}")
        return found

    def url(self, host: RegistryHost, *parts: str) -> str:
        path = "/".join(
            [host.path.rstrip("/"), self.ref.repository, *(quote(p, safe=":") for p in parts)]
        )
        url = f"{host.scheme}://{host.host}{path}"
        if host.is_mirror_of(self.ref.host):  # tells a mirror which registry is meant
            url += "?" + urlencode({"ns": self.ref.host})
        return url

    def scopes(self, push: bool = False) -> tuple[str]:
        return (f"repository:{self.ref.repository}:pull" + (",push" if push else ""),)

    def request(
        self,
        host: RegistryHost,
        method: str,
        *parts: str,
        headers: Mapping[str, str] | None = None,
        content: Content = None,
        push: bool = False,
    ) -> httpx.Response:
        return self.session.request(
            host,
            method,
            self.url(host, *parts),
            headers=headers,
            scopes=self.scopes(push),
            content=content,
        )
