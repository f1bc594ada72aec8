-- Signature nonces moved to their own database file (nonces.db): see nonces.rs.
DROP TABLE nonces;
