"""The whole sandbox: a mock 渝快办 platform and the mock legacy systems, on 127.0.0.1.

State lives under TONGBAN_HOME/sandbox so that a second demo run continues the same world (the legacy
systems' clocks, the platform's cases) and can show that nothing is delivered twice.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .runner import Server, port_free

PLATFORM_PORT = 8700
LEGACY_REST_PORT = 8701
LEGACY_TOKEN = "sandbox-legacy-token"  # a sandbox value, not a secret


def _port(preferred: int, fixed: bool) -> int:
    # The mapping files' defaults point at the preferred ports; when one is taken (a second sandbox),
    # take a free one and export its URL so the mappings' ${…} references follow.
    return preferred if fixed or port_free("127.0.0.1", preferred) else 0


@dataclass
class Sandbox:
    home: Path
    cases: int = 3000
    seed: int = 7
    bad_share: float = 0.03
    fixed_ports: bool = False
    servers: dict[str, Server] = field(default_factory=dict)
    world: object = None

    def start(self) -> "Sandbox":
        from .legacy_rest import create_app as legacy_app
        from .legacy_world import LegacyWorld
        from .platform import create_app as platform_app

        state = self.home / "sandbox"
        state.mkdir(parents=True, exist_ok=True)
        platform = Server(platform_app(str(state / "platform.db")), port=_port(PLATFORM_PORT, self.fixed_ports),
                          name="mock-platform").start()
        self.servers["platform"] = platform
        self.world = LegacyWorld(seed=self.seed, cases=self.cases, bad_share=self.bad_share,
                                 state_file=str(state / f"legacy-rest-{self.seed}-{self.cases}.json"))
        legacy = Server(legacy_app(self.world, token=LEGACY_TOKEN), port=_port(LEGACY_REST_PORT, self.fixed_ports),
                        name="legacy-rest").start()
        self.servers["legacy-rest"] = legacy
        self.export_env()
        return self

    def export_env(self) -> None:
        """Point the embedded settings and the mapping files at the running sandbox."""
        os.environ["TONGBAN_PLATFORM_URL"] = self.servers["platform"].url
        os.environ["CQ_SAMR_URL"] = self.servers["legacy-rest"].url
        os.environ.setdefault("CQ_SAMR_TOKEN", LEGACY_TOKEN)

    def advance(self, days: int = 1) -> None:
        """Move the legacy systems' clocks: cases progress between polls."""
        self.world.advance(days)

    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
