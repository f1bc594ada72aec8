-- Reconcilers instead of delta tasks (see vpnroute-reconciler).
--
-- A task now records only (gateway, version, due time): the change it stands for is the
-- difference between the desired state at its version and at the version before. The
-- desired state at a version is the current routes with, for every route changed by a later
-- version, its state before the earliest such change: `vpn_route_history` keeps those
-- before-images (present = 0: the route did not exist) until the version is applied.
CREATE TABLE vpn_route_history (
    gateway_id   TEXT NOT NULL,
    version      BIGINT NOT NULL,
    seq          INTEGER NOT NULL,
    present      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    route_source TEXT NOT NULL,
    route_dest   TEXT NOT NULL,
    next_hop     TEXT NOT NULL,
    weight       INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    published    INTEGER NOT NULL,
    description  TEXT NOT NULL,
    overlay_mode TEXT NOT NULL,
    create_time  BIGINT NOT NULL,
    PRIMARY KEY (gateway_id, seq, version)
);
CREATE INDEX vpn_route_history_version ON vpn_route_history(gateway_id, version);

CREATE TABLE gateway_tasks (
    gateway_id TEXT NOT NULL,
    version    BIGINT NOT NULL,
    due_at     BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (gateway_id, version)
);
CREATE INDEX gateway_tasks_due ON gateway_tasks(due_at);

-- Pending tasks of the delta era: their ops carry each route's state before the change.
INSERT OR IGNORE INTO vpn_route_history
    SELECT t.gateway_id, t.version,
           json_extract(e.value, '$.Upsert.route.seq'), 0, '', '', '', '', 0, 0, 0, '', '', 0
    FROM tasks t, json_each(t.op) e
    WHERE t.state = 'pending' AND json_extract(e.value, '$.Upsert') IS NOT NULL
      AND json_type(e.value, '$.Upsert.before') = 'null'
    ORDER BY t.id, e.key;
INSERT OR IGNORE INTO vpn_route_history
    SELECT t.gateway_id, t.version, json_extract(b.value, '$.seq'), 1,
           json_extract(b.value, '$.kind'), json_extract(b.value, '$.source'), json_extract(b.value, '$.dest'),
           json_extract(b.value, '$.next_hop'), json_extract(b.value, '$.weight'), json_extract(b.value, '$.priority'),
           json_extract(b.value, '$.published'), json_extract(b.value, '$.description'),
           json_extract(b.value, '$.overlay_mode'), json_extract(b.value, '$.create_time')
    FROM tasks t, json_each(t.op) e,
         json_each(json_array(COALESCE(json_extract(e.value, '$.Upsert.before'), json_extract(e.value, '$.Remove.route')))) b
    WHERE t.state = 'pending' AND json_type(b.value) = 'object'
    ORDER BY t.id, e.key;
INSERT OR IGNORE INTO gateway_tasks(gateway_id, version, due_at, created_at)
    SELECT gateway_id, version, due_at, created_at FROM tasks WHERE state = 'pending';
DROP TABLE tasks;

-- Claims (owner, fencing token, lease) and the failure record of each gateway.
ALTER TABLE gateway_versions ADD COLUMN claim_owner TEXT;
ALTER TABLE gateway_versions ADD COLUMN claim_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gateway_versions ADD COLUMN lease_until BIGINT;
ALTER TABLE gateway_versions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gateway_versions ADD COLUMN last_error TEXT;
ALTER TABLE gateway_versions ADD COLUMN next_retry_at BIGINT;
