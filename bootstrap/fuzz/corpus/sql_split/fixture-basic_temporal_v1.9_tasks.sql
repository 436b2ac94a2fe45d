ALTER TABLE fx_shards DROP COLUMN owner;
CREATE TABLE fx_tasks (
  range_hash BIGINT NOT NULL,
  task_queue_id BYTEA NOT NULL,
  task_id BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (range_hash, task_queue_id, task_id)
);
