"""The operator's tools: quarantine (隔离区), parked envelopes, replay and its marks."""
