-- Fixture schema written for temporal-bootstrap tests; not Temporal's schema.
CREATE TABLE fx_namespaces (
  id BYTEA NOT NULL,
  name VARCHAR(255) UNIQUE NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (id)
);

CREATE TABLE fx_shards (
  shard_id INTEGER NOT NULL,
  range_id BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (shard_id)
);

INSERT INTO fx_namespaces (id, name, data) VALUES ('\x01', 'fixture-system', '\x');
