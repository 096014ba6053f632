"""The auditor's wing: the tamper-evident ledger (账本), reconciliation against the platform, and what people read."""
