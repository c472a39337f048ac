-- Lets verification read an entry's subject tokens by index (to check them against the entry bytes).
CREATE INDEX audit_subject_tokens_by_idx ON audit_subject_tokens (idx);
