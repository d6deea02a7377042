-- A recovery session is advanced by one request at a time, across processes (SQLite).
ALTER TABLE recovery_sessions ADD COLUMN lease_until INTEGER;
