-- Audit log tables: entries (canonical bytes + RFC 6962 leaf hash + filter columns), subject tokens, checkpoints.
CREATE TABLE audit_entries (
    idx            INTEGER PRIMARY KEY,
    leaf_hash      BLOB NOT NULL,
    data           BLOB NOT NULL,
    occurred_at    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    agency         TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    role           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    case_reference TEXT NOT NULL,
    status         TEXT NOT NULL
);
CREATE INDEX audit_entries_occurred_at ON audit_entries (occurred_at);
CREATE INDEX audit_entries_case_reference ON audit_entries (case_reference);
CREATE INDEX audit_entries_user_id ON audit_entries (user_id);
CREATE INDEX audit_entries_agency_purpose ON audit_entries (agency, purpose);

CREATE TABLE audit_subject_tokens (
    token TEXT NOT NULL,
    idx   INTEGER NOT NULL,
    PRIMARY KEY (token, idx)
) WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    ts        TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
);
