-- The filter columns move out of audit_entries into audit_entry_meta, one row per entry, which the writer
-- fills (with the subject-token rows) in its own transaction after the entries' commit. An append then
-- writes only the log's own pages before its fsync, not a leaf of every index; searches and verification
-- bring the copies up to date first. A missing row is reported by verification like a changed one.
-- (audit_entries is rebuilt rather than altered with DROP COLUMN, which older SQLite libraries lack.)
CREATE TABLE audit_entry_meta (
    idx            INTEGER PRIMARY KEY,
    occurred_at    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    agency         TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    role           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    case_reference TEXT NOT NULL,
    status         TEXT NOT NULL
);
INSERT INTO audit_entry_meta
    SELECT idx, occurred_at, kind, agency, purpose, role, user_id, case_reference, status FROM audit_entries;
CREATE TABLE audit_entries_log (
    idx       INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    data      BLOB NOT NULL
);
INSERT INTO audit_entries_log SELECT idx, leaf_hash, data FROM audit_entries;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_log RENAME TO audit_entries;
CREATE INDEX audit_entry_meta_occurred_at ON audit_entry_meta (occurred_at);
CREATE INDEX audit_entry_meta_case_reference ON audit_entry_meta (case_reference);
CREATE INDEX audit_entry_meta_user_id ON audit_entry_meta (user_id);
CREATE INDEX audit_entry_meta_agency_purpose ON audit_entry_meta (agency, purpose);
