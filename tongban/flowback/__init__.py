"""National data flowback (数据回流, 第十九条): batches of case records from national ministry systems are
validated, routed by their own 行政区划 to the district or county they belong to, delivered to that district's
sink, and reconciled per batch.

    ministry batch (SOAP / XML / CSV + manifest) → sources → routing.Router → exchange tongban.flowback
    → one queue per district + one for the city → worker.DistrictDeliverer → sinks (REST / file) → reconcile
"""
from .config import CITY, FlowbackConfigError, SourceConfig, load_source_config  # noqa: F401
from .reconcile import BatchReconciliation, reconcile, render  # noqa: F401
from .routing import Reject, Route, Router  # noqa: F401
from .run import FlowbackRunReport, ingest_source, run_flowback_source  # noqa: F401
from .topology import flowback_topology, work_queue  # noqa: F401
from .worker import DistrictDeliverer, replay_parked_flowback  # noqa: F401
