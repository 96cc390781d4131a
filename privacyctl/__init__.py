"""privacyctl: the operators' command line for the privacy services (see docs/operations.md)."""
