CREATE TABLE fx_queue_metadata (
  queue_type INTEGER NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (queue_type)
);
INSERT INTO fx_queue_metadata (queue_type, data) VALUES (1, '\x');
