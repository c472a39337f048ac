"""The referral tables; apart from the outbox's sequence, the same text works on SQLite and PostgreSQL.

Times are fixed-width UTC text, so text order is time order in both.
"""

from __future__ import annotations

_COMMON = (
    """CREATE TABLE IF NOT EXISTS referrals (
        referral_id TEXT PRIMARY KEY,
        mash TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        received_at TEXT NOT NULL,
        is_open INTEGER NOT NULL,
        due_key TEXT NOT NULL,
        closed_at TEXT,
        rating TEXT NOT NULL,
        team TEXT NOT NULL,
        borough TEXT NOT NULL,
        doc TEXT NOT NULL,
        sealed TEXT NOT NULL
    )""",
    # In queue order and covering every queue filter: the open queue is read in index order, and listing
    # and counting never touch the wide rows.
    "CREATE INDEX IF NOT EXISTS referrals_queue ON referrals "
    "(is_open, due_key, received_at, referral_id, state, mash, rating, team, borough)",
    "CREATE INDEX IF NOT EXISTS referrals_closed ON referrals (closed_at)",
    # The primary key makes a second writer of the same version fail even if its compare-and-set slipped.
    """CREATE TABLE IF NOT EXISTS referral_history (
        referral_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (referral_id, version)
    )""",
)

_OUTBOX = """CREATE TABLE IF NOT EXISTS referral_outbox (
        seq {seq},
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL,
        referral_id TEXT NOT NULL,
        team TEXT NOT NULL,
        worker TEXT NOT NULL,
        created_at TEXT NOT NULL,
        review_id TEXT NOT NULL DEFAULT ''
    )"""
_OUTBOX_COMMON = (
    "CREATE INDEX IF NOT EXISTS referral_outbox_recipient ON referral_outbox (recipient, seq)",
    """CREATE TABLE IF NOT EXISTS referral_outbox_acks (
        recipient TEXT PRIMARY KEY,
        acked_seq BIGINT NOT NULL
    )""",
)
# Review notices name a review; an outbox created before they existed gains the column (SQLite has no
# ADD COLUMN IF NOT EXISTS, so its store adds it when the table lacks it).
OUTBOX_REVIEW_COLUMN = "ALTER TABLE referral_outbox ADD COLUMN review_id TEXT NOT NULL DEFAULT ''"
SQLITE = (*_COMMON, _OUTBOX.format(seq="INTEGER PRIMARY KEY AUTOINCREMENT"), *_OUTBOX_COMMON)
POSTGRES = (*_COMMON, _OUTBOX.format(seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), *_OUTBOX_COMMON,
            OUTBOX_REVIEW_COLUMN.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS"))
