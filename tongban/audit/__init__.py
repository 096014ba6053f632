"""The auditor's wing: the tamper-evident ledger (账本), reconciliation against the platform, what people read, and the
auditor's evidence (审计证据): platform-signed receipts, signed ledger checkpoints over a Merkle tree, and offline
evidence packages (ASiC-E style). See docs/audit.md."""
