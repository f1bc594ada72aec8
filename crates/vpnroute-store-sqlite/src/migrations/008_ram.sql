-- RAM (migration 8): the RAM user an access key belongs to (NULL: the account's own key), and each
-- account's RAM directory (users, groups, policies, roles, attachments) as one JSON
-- document (vpnroute-ram's Directory).
ALTER TABLE access_keys ADD COLUMN ram_user_id TEXT;
CREATE INDEX access_keys_by_ram_user ON access_keys(account_id, ram_user_id);
CREATE TABLE ram_directories (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    doc        TEXT NOT NULL
);
