-- Settings of the whole instance, one row per setting; a setting without a row has its
-- default. The API (`api/settings.rs`) knows the keys and how each value is written.

CREATE TABLE instance_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
