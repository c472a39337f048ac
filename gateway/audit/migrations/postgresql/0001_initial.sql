-- Audit log tables: entries (canonical bytes + RFC 6962 leaf hash + filter columns), subject tokens, checkpoints.
CREATE TABLE audit_entries (
    idx            BIGINT PRIMARY KEY,
    leaf_hash      BYTEA NOT NULL,
    data           BYTEA NOT NULL,
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
    idx   BIGINT NOT NULL,
    PRIMARY KEY (token, idx)
);

CREATE TABLE audit_checkpoints (
    seq       BIGSERIAL PRIMARY KEY,
    tree_size BIGINT NOT NULL,
    root_hash BYTEA NOT NULL,
    ts        TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL
);
