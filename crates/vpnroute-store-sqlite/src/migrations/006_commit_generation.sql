-- The commit generation: incremented by every write transaction just before it commits, and
-- read first by every read transaction. It tags the read cache's entries (see cache.rs), so
-- a cached result is used only by a reader whose snapshot is at exactly that generation.
CREATE TABLE store_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    commit_seq BIGINT NOT NULL
);
INSERT INTO store_meta(id, commit_seq) VALUES (1, 0);
