"""The whole sandbox: a mock 渝快办 platform and the mock legacy systems of three departments, on 127.0.0.1.

- 市场监管局 `cq-samr-rest`: the legacy REST API (sandbox.legacy_rest);
- 市人力社保局 `cq-hrss-soap`: the SOAP service with its WSDL (sandbox.legacy_soap);
- 市卫生健康委 `cq-wsjkw-files`: daily export files (GBK CSV, XML, XLSX) dropped into a folder (sandbox.filedrop).

With `flowback=True` (what `tongban sandbox up` runs) it also starts the mock ministry's SOAP batch service
(sandbox.ministry, one batch waiting) and the district sinks (sandbox.district_sinks).

Ports: by default the platform and the legacy systems take 8700-8702, the ministry 8790 and the district sinks
8791 (the mapping files' defaults), or a free port when one is taken; `fixed_ports=True` insists on those;
`port_base=N` puts every service on N, N+1, … in the order of `SERVICES`. A fixed port that is taken is refused
before anything starts, naming the port and the service.

State lives under TONGBAN_HOME/sandbox so that a second demo run continues the same world (the legacy
systems' clocks, the platform's cases, the drop folder) and can show that nothing is delivered twice.
`advance(days)` moves every department's clock: the REST and SOAP systems show later stages of their cases,
and the health commission drops one more export holding the cases that changed.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from .runner import Server, port_free

PLATFORM_PORT = 8700
LEGACY_REST_PORT = 8701
LEGACY_SOAP_PORT = 8702
MINISTRY_PORT = 8790        # mappings/flowback/sources/mps-soap.yaml's default
DISTRICT_SINKS_PORT = 8791  # mappings/flowback/district-sinks.yaml's default
# Every service in the order `port_base` numbers them (N, N+1, …), with its default port.
SERVICES = {"platform": PLATFORM_PORT, "legacy-rest": LEGACY_REST_PORT, "legacy-soap": LEGACY_SOAP_PORT,
            "ministry": MINISTRY_PORT, "district-sinks": DISTRICT_SINKS_PORT}
FLOWBACK_SERVICES = ("ministry", "district-sinks")
SANDBOX_BATCH = "MPS-SANDBOX-0001"  # the batch the mock ministry offers when the sandbox starts
LEGACY_TOKEN = "sandbox-legacy-token"  # a sandbox value, not a secret
DROP_AGE_SECONDS = 120  # exports are dated back so the file adapter's "still being written" wait lets them through


def planned_ports(port_base: int | None = None) -> dict[str, int]:
    """The port of every service: N, N+1, … from `port_base`, else the defaults."""
    if port_base is None:
        return dict(SERVICES)
    return {name: port_base + offset for offset, name in enumerate(SERVICES)}


def check_ports_free(ports: dict[str, int]) -> None:
    """Refuse, before anything starts, when a port the sandbox must have is taken (naming each one)."""
    taken = [f"{port} ({name})" for name, port in ports.items() if not port_free("127.0.0.1", port)]
    if taken:
        raise OSError(errno.EADDRINUSE, f"port{'s' if len(taken) > 1 else ''} {', '.join(taken)} on 127.0.0.1 "
                                        f"already in use")


@dataclass
class _Stoppable:
    """A server that is not a sandbox.runner.Server (the SOAP mock runs its own WSGI thread)."""

    url: str
    stop: Callable[[], None]


@dataclass
class Sandbox:
    home: Path
    cases: int = 3000
    seed: int = 7
    bad_share: float = 0.03
    fixed_ports: bool = False
    port_base: int | None = None
    flowback: bool = False                  # also the mock ministry and the district sinks
    servers: dict[str, Any] = field(default_factory=dict)
    world: object = None
    soap: object = None                     # sandbox.legacy_soap.HrssSoapService
    drop_dir: Path | None = None            # the health commission's drop folder
    drop_as_of: datetime | None = None      # the moment of the last export written into it
    ministry: object = None                 # sandbox.ministry.MinistrySoapService (flowback=True)

    # --- state ------------------------------------------------------------------------------------
    @property
    def _state_dir(self) -> Path:
        return self.home / "sandbox"

    @property
    def _clocks_file(self) -> Path:
        return self._state_dir / f"legacy-clocks-{self.seed}-{self.cases}.json"

    def _load_clocks(self) -> dict[str, str]:
        if self._clocks_file.exists():
            return json.loads(self._clocks_file.read_text(encoding="utf-8"))
        return {}

    def _save_clocks(self) -> None:
        self._clocks_file.write_text(json.dumps({
            "soap": self.soap.clock.isoformat(), "files": self.drop_as_of.isoformat()}), encoding="utf-8")

    # --- life cycle -------------------------------------------------------------------------------
    @property
    def _fixed(self) -> bool:
        return self.fixed_ports or self.port_base is not None

    def _port(self, name: str) -> int:
        # The mapping files' defaults point at the preferred ports; when one is taken (a second sandbox) and the
        # ports are not fixed, take a free one and export its URL so the mappings' ${…} references follow.
        preferred = planned_ports(self.port_base)[name]
        return preferred if self._fixed or port_free("127.0.0.1", preferred) else 0

    def start(self) -> "Sandbox":
        if self._fixed:
            check_ports_free({name: port for name, port in planned_ports(self.port_base).items()
                              if self.flowback or name not in FLOWBACK_SERVICES})
        try:
            return self._start()
        except BaseException:
            self.stop()  # nothing half-started stays behind
            raise

    def _start(self) -> "Sandbox":
        from .legacy_rest import create_app as legacy_app
        from .legacy_world import LegacyWorld
        from .platform import create_app as platform_app

        from tongban.store.files import private_dir

        state = private_dir(self._state_dir)  # 0700 from creation: the mock platform's cases, the drops
        from .sealed_dept import certs_dir_of, ensure_certs

        # The platform verifies sealed documents against the sandbox CA (created on first use, git-ignored) and
        # signs its case receipts with its receipt certificate from it (docs/audit.md).
        ensure_certs(certs_dir_of(self.home))
        platform = Server(platform_app(str(state / "platform.db"), certs_dir=str(certs_dir_of(self.home))),
                          port=self._port("platform"), name="mock-platform").start()
        self.servers["platform"] = platform
        self.world = LegacyWorld(seed=self.seed, cases=self.cases, bad_share=self.bad_share,
                                 state_file=str(state / f"legacy-rest-{self.seed}-{self.cases}.json"))
        legacy = Server(legacy_app(self.world, token=LEGACY_TOKEN), port=self._port("legacy-rest"),
                        name="legacy-rest").start()
        self.servers["legacy-rest"] = legacy
        clocks = self._load_clocks()
        self._start_soap(clocks.get("soap"))
        self._start_drop(clocks.get("files"))
        if self.flowback:
            self._start_flowback()
        self._save_clocks()
        self.export_env()
        return self

    def _start_flowback(self) -> None:
        """The mock ministry (SOAP batch service, one batch waiting) and the district sinks, each on its port."""
        from .district_sinks import DistrictSinkWorld
        from .ministry import MinistrySoapService, make_batch

        self.ministry = MinistrySoapService([make_batch(SANDBOX_BATCH, 200, seed=5)])
        self.servers["ministry"] = Server(self.ministry.app, port=self._port("ministry"), name="mock-ministry").start()
        sinks = DistrictSinkWorld(self.home / "flowback-drop")  # the folder mappings/flowback/district-sinks.yaml names
        sinks.server.sock.close()  # it binds a free port; the sandbox gives it its planned one instead
        sinks.server = Server(sinks.server.app, port=self._port("district-sinks"), name="district-sinks")
        self.servers["district-sinks"] = _Stoppable(sinks.start().server.url, sinks.stop)

    def _start_soap(self, saved_clock: str | None) -> None:
        from .legacy_soap import HrssSoapService, start_soap_server

        self.soap = HrssSoapService(seed=self.seed, cases_count=self.cases)
        # A restarted sandbox continues where it was; a new one starts two days into the data.
        self.soap.clock = (datetime.fromisoformat(saved_clock) if saved_clock
                           else self.soap.first_entry + timedelta(days=2))
        url, stop = start_soap_server(port=self._port("legacy-soap"), service=self.soap)
        self.servers["legacy-soap"] = _Stoppable(url + "?wsdl", stop)

    def _start_drop(self, saved_as_of: str | None) -> None:
        from .filedrop import START

        self.drop_dir = self._state_dir / "drops" / "wsjkw"
        self.drop_dir.mkdir(parents=True, exist_ok=True)
        if saved_as_of:
            self.drop_as_of = datetime.fromisoformat(saved_as_of)  # earlier drops are in the folder or done/
        else:
            self.drop_as_of = START + timedelta(days=2)
            self._write_drop(changed_after=None)

    def _write_drop(self, changed_after: datetime | None):
        """One export batch as of `drop_as_of`, holding the cases changed since `changed_after`."""
        from .filedrop import write_exports

        per_file = max(20, self.cases // 4)
        manifest = write_exports(self.drop_dir, self.seed, rows=per_file, xml_rows=per_file,
                                 xlsx_rows=max(10, per_file // 2), day=f"{self.drop_as_of:%Y%m%d%H%M}",
                                 as_of=self.drop_as_of, changed_after=changed_after)
        written = time.time() - DROP_AGE_SECONDS
        for path in manifest.files:
            os.utime(path, (written, written))
        return manifest

    def environment(self) -> dict[str, str]:
        """The variables that point the settings and the mapping files at this sandbox. The credentials are
        the sandbox's own (the mock services accept exactly these), not secrets."""
        from .legacy_soap import USERNAME

        variables = {
            "TONGBAN_HOME": str(self.home),
            "TONGBAN_PLATFORM_URL": self.servers["platform"].url,
            "CQ_SAMR_URL": self.servers["legacy-rest"].url,
            "CQ_SAMR_TOKEN": os.environ.get("CQ_SAMR_TOKEN", LEGACY_TOKEN),
            "CQ_HRSS_WSDL": self.servers["legacy-soap"].url,
            "CQ_HRSS_USER": USERNAME,
            "CQ_HRSS_PASSWORD": self.soap.password,
            "CQ_WSJKW_DROP": str(self.drop_dir),
        }
        if "ministry" in self.servers:
            from .ministry import PASSWORD_ENV, USERNAME as MINISTRY_USER, USERNAME_ENV

            variables["TONGBAN_MINISTRY_URL"] = self.servers["ministry"].url
            variables[USERNAME_ENV] = MINISTRY_USER
            variables[PASSWORD_ENV] = self.ministry.password
        if "district-sinks" in self.servers:
            variables["TONGBAN_DISTRICT_GATEWAY"] = self.servers["district-sinks"].url
        return variables

    def export_env(self) -> None:
        """Point this process at the running sandbox, and write the same variables to
        `<TONGBAN_HOME>/sandbox/env.sh` so that other shells (`tongban ingest`, `tongban worker`) can follow."""
        variables = self.environment()
        os.environ.update(variables)
        lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
        (self._state_dir / "env.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def env_file(self) -> Path:
        return self._state_dir / "env.sh"

    def advance(self, days: int = 1) -> None:
        """Move the legacy systems' clocks: cases progress between polls, and a new export is dropped."""
        self.world.advance(days)
        self.soap.advance(days)
        previous = self.drop_as_of
        self.drop_as_of = previous + timedelta(days=days)
        self._write_drop(changed_after=previous)
        self._save_clocks()

    def urls(self) -> dict[str, str]:
        urls = {name: server.url for name, server in self.servers.items()}
        if self.drop_dir is not None:
            urls["wsjkw-drop"] = str(self.drop_dir)
        return urls

    def ports(self) -> dict[str, int]:
        """The port each running service listens on."""
        import urllib.parse

        return {name: urllib.parse.urlsplit(server.url).port for name, server in self.servers.items()}

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()
