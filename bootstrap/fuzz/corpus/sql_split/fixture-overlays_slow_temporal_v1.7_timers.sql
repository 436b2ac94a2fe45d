CREATE TABLE fx_timers (
  shard_id INTEGER NOT NULL,
  visibility_timestamp TIMESTAMP NOT NULL,
  task_id BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (shard_id, visibility_timestamp, task_id)
);
DO $$ BEGIN PERFORM pg_sleep(5); END $$;
CREATE INDEX fx_timers_by_task ON fx_timers (task_id);
