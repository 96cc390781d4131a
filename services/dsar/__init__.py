"""DSAR service: data-subject-request cases, identity verification, fan-out to systems, exports."""
