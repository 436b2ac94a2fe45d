/* A block comment; with a semicolon /* and a nested one; */ inside */
ALTER TABLE fx_namespaces ADD COLUMN note TEXT NOT NULL DEFAULT 'created; by fixture';
-- a line comment; also with a semicolon
ALTER TABLE fx_shards ADD COLUMN owner VARCHAR(64) DEFAULT 'it''s; quoted';
