-- The request log's journal (host/src/audit/journal.rs) numbers every entry it appends. The
-- highest number whose entry is in request_logs is kept here, updated in the same
-- transaction as the rows, so that replaying the journal after a crash inserts exactly the
-- entries the table lacks.
CREATE TABLE request_log_journal (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
) STRICT;

INSERT INTO request_log_journal (id, through) VALUES (1, 0);
