-- A recovery session is advanced by one request at a time, across processes (PostgreSQL).
ALTER TABLE recovery_sessions ADD COLUMN lease_until BIGINT;
