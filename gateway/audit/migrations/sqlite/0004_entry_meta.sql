-- The filter columns move out of audit_entries into audit_entry_meta, one row per entry, which the writer
-- fills (with the subject-token rows) in its own transaction after the entries' commit. An append then
-- writes only the log's own pages before its fsync, not a leaf of every index; searches and verification
-- bring the copies up to date first. A missing row is reported by verification like a changed one.
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
DROP INDEX audit_entries_occurred_at;
DROP INDEX audit_entries_case_reference;
DROP INDEX audit_entries_user_id;
DROP INDEX audit_entries_agency_purpose;
ALTER TABLE audit_entries DROP COLUMN occurred_at;
ALTER TABLE audit_entries DROP COLUMN kind;
ALTER TABLE audit_entries DROP COLUMN agency;
ALTER TABLE audit_entries DROP COLUMN purpose;
ALTER TABLE audit_entries DROP COLUMN role;
ALTER TABLE audit_entries DROP COLUMN user_id;
ALTER TABLE audit_entries DROP COLUMN case_reference;
ALTER TABLE audit_entries DROP COLUMN status;
CREATE INDEX audit_entry_meta_occurred_at ON audit_entry_meta (occurred_at);
CREATE INDEX audit_entry_meta_case_reference ON audit_entry_meta (case_reference);
CREATE INDEX audit_entry_meta_user_id ON audit_entry_meta (user_id);
CREATE INDEX audit_entry_meta_agency_purpose ON audit_entry_meta (agency, purpose);
