ALTER TABLE fx_executions_visibility ADD COLUMN customer_id VARCHAR(255)
  GENERATED ALWAYS AS (search_attributes->>'CustomerId') STORED;
CREATE INDEX fx_by_customer ON fx_executions_visibility (namespace_id, customer_id);
