-- Witness cosignatures on checkpoints: one signed-note signature line per witness and tree size.
CREATE TABLE audit_cosignatures (
    tree_size BIGINT NOT NULL,
    root_hash BYTEA NOT NULL,
    line      TEXT NOT NULL,
    PRIMARY KEY (tree_size, line)
);
