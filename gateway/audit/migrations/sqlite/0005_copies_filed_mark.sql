-- Where filing stands: the copies of every entry below `upto` have been filed (see 0004). Seeded from the
-- copy rows, which 0004 moved over for every entry.
CREATE TABLE IF NOT EXISTS audit_copies_filed (
    id   INTEGER PRIMARY KEY CHECK (id = 0),
    upto INTEGER NOT NULL
);
INSERT OR IGNORE INTO audit_copies_filed SELECT 0, coalesce(max(idx) + 1, 0) FROM audit_entry_meta;
