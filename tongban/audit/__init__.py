"""The auditor's evidence (审计证据): platform-signed receipts, signed ledger checkpoints over a Merkle tree, and
offline evidence packages (ASiC-E style). See docs/audit.md."""
