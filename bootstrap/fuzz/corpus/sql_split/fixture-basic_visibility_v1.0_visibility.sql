CREATE TABLE fx_executions_visibility (
  namespace_id CHAR(64) NOT NULL,
  run_id CHAR(64) NOT NULL,
  start_time TIMESTAMP NOT NULL,
  status INTEGER NOT NULL,
  search_attributes JSONB,
  PRIMARY KEY (namespace_id, run_id)
);
CREATE INDEX fx_by_start_time ON fx_executions_visibility (namespace_id, start_time DESC);
