"""Consent service: the consent ledger, purpose decisions, and propagation of opt-outs."""
