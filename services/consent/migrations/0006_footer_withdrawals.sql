-- Unsubscribe clicks (POST) already turned into a withdrawal. A repeated or concurrent click on the same
-- link before the ledger has applied the first writes nothing more. Keyed by the withdrawal's event id
-- (a uuid5 of the link's token and the state it withdrew), which names no one.
CREATE TABLE footer_withdrawals (
    event_id   uuid PRIMARY KEY,
    clicked_at timestamptz NOT NULL DEFAULT now()
);
