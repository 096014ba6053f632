"""Delivery: bus consumers that push case events to 渝快办 and record the signed receipts."""
