-- Per-account, per-region resource counts, maintained with every insert/delete, so quotas
-- and TotalCount of the Describe lists do not count rows (10,000 gateways: ~5 ms a call).
CREATE TABLE resource_counts (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    region_id  TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, region_id)
);
INSERT INTO resource_counts(account_id, kind, region_id, n)
    SELECT account_id, kind, region_id, COUNT(*) FROM resources GROUP BY account_id, kind, region_id;
