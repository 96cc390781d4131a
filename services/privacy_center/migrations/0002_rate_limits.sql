-- Rate limits shared by every replica (privacy_runtime/pages/ratelimit.py, SharedRateLimiter): one row
-- per scope (email form per address, per client; code entry per client) and hashed key, counting the
-- attempts of the window that ends at expires_at. Ended windows are deleted by the hourly purge.
CREATE TABLE rate_limits (
    scope      text NOT NULL,
    key        text NOT NULL,
    expires_at timestamptz NOT NULL,
    hits       integer NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
