"""The three privacy services: consent, dsar, notifier."""
