-- vpnroute schema, version 1. Portable SQL: SQLite now, PostgreSQL later.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    is_root     INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE nonces (
    access_key_id TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    seen_at       BIGINT NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
);
CREATE INDEX nonces_seen_at ON nonces(seen_at);

-- Every resource but routes, as a JSON document of the domain type.
CREATE TABLE resources (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    region_id   TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX resources_list ON resources(account_id, kind, region_id, seq);
CREATE INDEX resources_parent ON resources(parent_id, kind);

CREATE TABLE vpn_routes (
    seq          INTEGER PRIMARY KEY,
    gateway_id   TEXT NOT NULL,
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
    UNIQUE (gateway_id, kind, route_source, route_dest, next_hop)
);
CREATE INDEX vpn_routes_next_hop ON vpn_routes(next_hop);
CREATE INDEX vpn_routes_dest ON vpn_routes(gateway_id, route_dest);

CREATE TABLE vpc_route_entries (
    id             TEXT PRIMARY KEY,
    route_table_id TEXT NOT NULL,
    dest           TEXT NOT NULL,
    next_hop_type  TEXT NOT NULL,
    next_hop_id    TEXT NOT NULL,
    entry_type     TEXT NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    create_time    BIGINT NOT NULL,
    seq            INTEGER NOT NULL
);
CREATE INDEX vpc_route_entries_table ON vpc_route_entries(route_table_id, seq);
CREATE INDEX vpc_route_entries_dest ON vpc_route_entries(route_table_id, dest);
CREATE INDEX vpc_route_entries_hop ON vpc_route_entries(next_hop_id);

CREATE TABLE client_tokens (
    account_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    token       TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, action, token)
);
CREATE INDEX client_tokens_created ON client_tokens(created_at);

-- Per-gateway asynchronous tasks: a change is committed with its task in one transaction.
CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    gateway_id  TEXT NOT NULL,
    op          TEXT NOT NULL,
    version     BIGINT NOT NULL,
    due_at      BIGINT,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX tasks_pending ON tasks(state, gateway_id, id);

CREATE TABLE gateway_versions (
    gateway_id  TEXT PRIMARY KEY,
    desired     BIGINT NOT NULL,
    applied     BIGINT NOT NULL
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
