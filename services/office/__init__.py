"""The privacy office: the operators' console (internal only)."""
