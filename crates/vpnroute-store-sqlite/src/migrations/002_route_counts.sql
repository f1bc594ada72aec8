-- Per-gateway route counts, maintained with every insert/delete, so quota checks and
-- TotalCount do not scan a gateway's routes.
CREATE TABLE gateway_route_counts (
    gateway_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (gateway_id, kind)
);
INSERT INTO gateway_route_counts(gateway_id, kind, n)
    SELECT gateway_id, kind, COUNT(*) FROM vpn_routes GROUP BY gateway_id, kind;
