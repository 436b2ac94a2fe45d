CREATE TABLE fx_timers (
  shard_id INTEGER NOT NULL,
  visibility_timestamp TIMESTAMP NOT NULL,
  task_id BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (shard_id, visibility_timestamp, task_id)
);
