-- The recovery flow counts the users who carry a credential's name, case-insensitively:
-- without an index on the folded names, each count reads the whole users table.
CREATE INDEX users_name_folded ON users (LOWER(given_name), LOWER(family_name));
