"""National data flowback (数据回流, 第十九条): batches of case records from national ministry systems are read by
the adapters, mapped onto the national flowback record by a source file in the mapping language (mapping.py),
routed by their own 行政区划 to the district or county they belong to, delivered to that district's sink, and
reconciled per batch (docs/flowback.md).

    ministry batch (any adapter + manifest) → batches → mapping.FlowbackMapping → routing.Router
    → exchange <prefix>.flowback → one queue per district + one for the city → worker.DistrictDeliverer
    → sinks (REST / file) → reconcile
"""
from .config import CITY, FlowbackConfigError  # noqa: F401
from .mapping import FlowbackMapping, is_flowback_mapping, load_flowback_mapping  # noqa: F401
from .reconcile import BatchReconciliation, reconcile, render  # noqa: F401
from .routing import Reject, Route, Router  # noqa: F401
from .run import FlowbackRunReport, ingest_source, retry_batch, run_flowback_source  # noqa: F401
from .topology import flowback_prefix, flowback_topology, work_queue  # noqa: F401
from .worker import DistrictDeliverer, replay_parked_flowback  # noqa: F401

load_source_config = load_flowback_mapping  # the name callers used before source files were mappings
