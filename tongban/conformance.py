"""Conformance kit for source adapters: the checks every adapter must pass, as a pytest base class.

An adapter author (built-in or third party) subclasses `AdapterConformance` in a test module, names the
adapter kind and a mapping file, and implements a few hooks against a sandbox copy of the source:

    from tongban.conformance import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        adapter_kind = "ftp"                            # the name under the `tongban.adapters` entry point
        mapping_file = "mappings/my-dept-ftp.yaml"      # its `source:` is replaced by start_source()'s settings

        def start_source(self, workdir):                # start a small sandbox source, return adapter settings
            ...
        def fail_source_once(self): ...                 # the next call fails transiently (503, timeout …)
        def inject_bad_record(self) -> str: ...         # a record that breaks a rule; returns its key
        def serve_hostile_input(self): ...              # the next answer is hostile (XML bomb, XXE …)
        def change_source(self): ...                    # records change or arrive (for the incremental check)

and inherits these checks (the `test_*` methods below): the adapter is registered; a full fetch yields
every record as JSON-ready data; an incremental fetch from the watermark (or, for sources without one, a
second fetch after commit) yields only what changed; a run that crashes between fetch and publish loses
and duplicates nothing once re-run; a transient failure is retried; a bad record is quarantined with a
named rule; hostile input is rejected. Everything runs on 127.0.0.1 with a store under tmp_path, the
durable local bus and the mock 渝快办 platform, so the kit needs no broker and runs in CI.

Importing this module needs neither pytest nor the sandbox: the class sets itself up through pytest's xunit hooks
(`setup_method` / `teardown_method`, a temporary work folder and `self.monkeypatch`), and pytest and the mock
platform (sandbox/) are imported only when a check runs.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar, Iterator

from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError, adapter_class

__all__ = ["AdapterConformance", "CrashingBus", "SubmitterConformance"]


def _fail(message: str) -> None:
    """Fail the check (as a pytest failure when pytest runs it, else an AssertionError)."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - the kit run by hand
        raise AssertionError(message) from None
    pytest.fail(message)


@contextlib.contextmanager
def _expect(error: type[BaseException], what: str) -> Iterator[None]:
    """The block must raise `error` (like pytest.raises, without needing pytest)."""
    try:
        yield
    except error:
        return
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


class CrashingBus:
    """A bus that dies in the middle of publishing: it passes the first half of the first batch to the
    real bus (so some events really are on the bus) and then raises, like a broker connection lost mid-run."""

    def __init__(self, bus):
        self.bus = bus
        self.name = bus.name
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)

    def declare(self, work) -> None:
        self.bus.declare(work)

    def publish(self, work, envelopes) -> None:
        envelopes = list(envelopes)
        if not self.crashed:
            self.crashed = True
            self.bus.publish(work, envelopes[: len(envelopes) // 2])
            raise ConnectionError("conformance: broker connection lost while publishing")
        self.bus.publish(work, envelopes)


class AdapterConformance:
    """Base class of an adapter's conformance tests (pytest collects subclasses named Test…)."""

    # --- what the subclass declares ------------------------------------------------------------------
    adapter_kind: ClassVar[str] = ""
    mapping_file: ClassVar[str | Path] = ""
    # True: the adapter retries transient failures inside one fetch. False: a transient condition (a file
    # still being written) is left for the next run, which must then pick it up.
    retries_within_fetch: ClassVar[bool] = True

    # --- hooks the subclass implements ---------------------------------------------------------------
    def start_source(self, workdir: Path) -> dict[str, Any]:
        """Start a small sandbox copy of the source; return the adapter settings (the `source:` section).
        `self.monkeypatch` is available for the environment variables the settings name."""
        raise NotImplementedError

    def stop_source(self) -> None:
        """Stop what start_source started."""

    def fail_source_once(self) -> None:
        """Make the source fail transiently once (HTTP 503, a timeout, a file still being written …)."""
        raise NotImplementedError

    def source_recovers(self) -> None:
        """For sources with `retries_within_fetch = False`: end the transient condition before the next run."""

    def inject_bad_record(self) -> str:
        """Put one record into the source that must be quarantined (or name one already there); return its key."""
        raise NotImplementedError

    def serve_hostile_input(self) -> str | None:
        """Make the source's next answer hostile (entity bomb, external entity, non-JSON …). May return a marker
        text that would show up in a record only if the hostile content had been expanded."""
        raise NotImplementedError

    def change_source(self) -> None:
        """Change or add records (for the incremental check); leave unimplemented to skip that part."""
        raise NotImplementedError

    # --- plumbing --------------------------------------------------------------------------------------
    def setup_method(self, method=None) -> None:
        """pytest's xunit hook: a fresh work folder, `self.monkeypatch`, and the source started."""
        from pytest import MonkeyPatch  # only when the kit runs

        if not self.adapter_kind or not self.mapping_file:
            _fail(f"{type(self).__name__} must set adapter_kind and mapping_file")
        self.workdir = Path(tempfile.mkdtemp(prefix="tongban-conformance-"))
        self.monkeypatch = MonkeyPatch()
        self._started = False
        self.settings = self.start_source(self.workdir)
        self._started = True

    def teardown_method(self, method=None) -> None:
        try:
            if getattr(self, "_started", False):
                self.stop_source()
        finally:
            self.monkeypatch.undo()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def mapping(self):
        """The subclass's mapping file, with its source section replaced by the sandbox settings."""
        from tongban.mapping import load_mapping

        mapping = load_mapping(self.mapping_file)
        mapping.source = {**self.settings, "adapter": self.adapter_kind}
        return mapping

    def make_adapter(self) -> Adapter:
        return adapter_class(self.adapter_kind)(self.mapping().system, dict(self.settings))

    def fetch(self, watermark: str | None = None, *, commit: bool = True) -> list[RawRecord]:
        """One fetch with a fresh adapter, finished like the pipeline finishes it (commit, or abort)."""
        adapter = self.make_adapter()
        try:
            records = list(adapter.fetch(watermark))
        except BaseException:
            adapter.abort("conformance: fetch failed")
            raise
        finally:
            if not commit:
                adapter.abort("conformance: look only")
        if commit:
            adapter.commit()
        adapter.close()
        return records

    def keys(self, records: list[RawRecord]) -> list[str]:
        mapping = self.mapping()
        return [mapping.record_key(r.data) for r in records if not r.error and r.data]

    def _newest_watermark(self, records: list[RawRecord]) -> str | None:
        mapping = self.mapping()
        marks = [m for r in records if not r.error and (m := mapping.watermark_of(r.data))]
        return max(marks) if marks else None

    def _pipeline(self):
        """A store under tmp_path, the durable local bus and a mock 渝快办 platform (served on 127.0.0.1)."""
        from sandbox.platform import create_app
        from sandbox.runner import Server
        from tongban.bus.local import LocalBus
        from tongban.platform.client import PlatformClient
        from tongban.settings import Settings
        from tongban.store import open_store
        from tongban.store.schema import upgrade

        server = Server(create_app(str(self.workdir / "platform.db")), port=0, name="conformance-platform").start()
        url = f"sqlite:///{self.workdir / 'tongban.db'}"
        upgrade(url)  # the kit's own scratch database, at the schema's head
        store = open_store(url)
        platform = PlatformClient(Settings(home=self.workdir, platform_url=server.url))

        def close() -> None:
            platform.close()
            server.stop()

        return store, LocalBus(store), platform, close

    # --- the checks ------------------------------------------------------------------------------------
    def test_adapter_is_registered_under_the_entry_point(self):
        cls = adapter_class(self.adapter_kind)
        assert issubclass(cls, Adapter), f"{cls} is not an adapters.base.Adapter"
        assert cls.kind == self.adapter_kind

    def test_full_fetch_yields_every_record_as_json_ready_data(self):
        # Looking without committing changes nothing: an aborted fetch leaves the source as it was.
        looked = self.fetch(None, commit=False)
        assert sorted(self.keys(self.fetch(None, commit=False))) == sorted(self.keys(looked))
        records = self.fetch(None)
        good = [r for r in records if not r.error]
        assert good, "a full fetch of the sandbox source yielded no readable records"
        for record in records:
            assert isinstance(record.data, dict) and isinstance(record.position, str) and record.position
            json.dumps(record.data, ensure_ascii=False)  # plain data only: no protocol objects leak out
        keys = self.keys(good)
        assert all(keys), "every readable record must carry the mapping's record key"
        assert sorted(keys) == sorted(self.keys(looked))

    def test_incremental_fetch_yields_only_what_changed(self):
        first = self.fetch(None)
        assert first
        mark = self._newest_watermark(first)
        if mark is None and self.mapping().watermark_path is not None:
            _fail("the mapping declares record.watermark but no record carries one")
        assert self.fetch(mark) == [], "nothing changed, yet the second fetch yielded records"
        try:
            self.change_source()
        except NotImplementedError:
            return
        changed = self.fetch(mark)
        assert changed, "the source changed, yet the fetch from the watermark yielded nothing"
        if mark is not None:
            mapping = self.mapping()
            assert all(mapping.watermark_of(r.data) > mark for r in changed if not r.error)
        first_positions = {(r.position, json.dumps(r.data, sort_keys=True)) for r in first}
        assert not [r for r in changed if (r.position, json.dumps(r.data, sort_keys=True)) in first_positions], \
            "the fetch from the watermark repeated unchanged records"

    def test_crash_between_fetch_and_publish_loses_and_duplicates_nothing(self):
        from tongban.delivery.worker import DeliveryWorker
        from tongban.pipeline.ingest import run_ingest
        from tongban.store import state as st
        from tongban.store.tables import quarantine

        expected = set(self.keys(self.fetch(None, commit=False)))
        assert expected
        store, bus, platform, close = self._pipeline()
        try:
            mapping = self.mapping()
            crashing = CrashingBus(bus)
            with _expect(ConnectionError, "the crashing bus"):
                run_ingest(mapping, store=store, bus=crashing, platform=platform,
                           adapter=adapter_class(self.adapter_kind)(mapping.system, mapping.source))
            with store.read() as conn:
                assert st.get_watermark(conn, mapping.system) is None, "the watermark moved although publishing failed"
            report = run_ingest(mapping, store=store, bus=bus, platform=platform)
            assert report.fetched >= len(expected), "the re-run did not see the records of the crashed run again"
            stats = DeliveryWorker(store=store, bus=bus, platform=platform).run(stop=threading.Event(), idle_exit=0.5)
            assert stats.parked == 0 and stats.rejected == 0

            with store.read() as conn:
                quarantined = {row.source_key for row in conn.execute(
                    quarantine.select().where(quarantine.c.system == mapping.system))}
                delivered: dict[str, tuple[str, int]] = {}
                for key in expected - quarantined:
                    number = st.get_case_number(conn, mapping.system, key)
                    _snapshot, last_sequence = st.get_snapshot(conn, mapping.system, key)
                    delivered[key] = (number, last_sequence)
            lost = sorted(key for key, (number, last) in delivered.items() if not number or not last)
            assert not lost, f"records neither delivered nor quarantined: {lost[:5]}"
            for key, (number, last_sequence) in delivered.items():
                case = platform.case(number)
                sequences = [event["sequence"] for event in case["events"]]
                # Every event of the case arrived exactly once, in order: nothing lost, nothing twice.
                assert sequences == list(range(1, last_sequence + 1)), f"case {key}: platform holds {sequences}"
        finally:
            close()

    def test_transient_failure_is_retried(self):
        expected = sorted(self.keys(self.fetch(None, commit=False)))
        self.fail_source_once()
        if self.retries_within_fetch:
            try:
                records = self.fetch(None)
            except TransientSourceError as exc:  # pragma: no cover - the failure this check exists for
                _fail(f"one transient failure was not retried: {exc}")
            assert sorted(self.keys(records)) == expected
        else:
            first = self.keys(self.fetch(None))
            self.source_recovers()
            second = self.keys(self.fetch(None))
            assert len(first) < len(expected), "the transient condition did not hold the first run back"
            assert sorted(first + second) == expected, "the next run did not pick up exactly what was held back"

    def test_bad_record_is_quarantined_with_a_named_rule(self):
        from tongban.pipeline.ingest import run_ingest
        from tongban.store import state as st
        from tongban.store.tables import quarantine

        key = self.inject_bad_record()
        store, bus, platform, close = self._pipeline()
        try:
            mapping = self.mapping()
            report = run_ingest(mapping, store=store, bus=bus, platform=platform)
            assert report.quarantined >= 1
            with store.read() as conn:
                rows = list(conn.execute(quarantine.select().where(
                    quarantine.c.system == mapping.system, quarantine.c.source_key == key)))
                snapshot, _ = st.get_snapshot(conn, mapping.system, key)
            assert rows, f"record {key} was not quarantined (reasons seen: {report.quarantine_reasons})"
            assert all(row.rule and row.stage for row in rows)
            assert key in rows[0].rule, "the rule text must name the record"
            assert snapshot is None, f"record {key} was quarantined and published"
            assert report.events_published > 0, "the good records must go on"
        finally:
            close()

    def test_hostile_input_is_rejected(self):
        marker = self.serve_hostile_input()
        adapter = self.make_adapter()
        records: list[RawRecord] = []
        try:
            with _expect(SourceError, "hostile input"):
                try:
                    records = list(adapter.fetch(None))
                except SourceError:
                    raise
                else:
                    # Not raising is fine only when the hostile part was refused record by record or file by file.
                    readable = [r for r in records if not r.error]
                    refused = getattr(adapter, "failed_files", None) or [r for r in records if r.error]
                    if refused and not any(marker and marker in json.dumps(r.data, ensure_ascii=False)
                                           for r in readable):
                        raise SourceError(adapter.system, "hostile input refused without raising")
        finally:
            adapter.abort("conformance: hostile input")
            adapter.close()
        if marker:
            assert not any(marker in json.dumps(r.data, ensure_ascii=False) for r in records), \
                "hostile entities were expanded into a record"


def __getattr__(name: str):
    """`from tongban.conformance import SubmitterConformance`: the submit side's kit, a pytest class, is imported only
    when asked for, so importing this module still needs neither pytest nor the sandbox."""
    if name == "SubmitterConformance":
        from tongban.conformance_submit import SubmitterConformance

        return SubmitterConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
