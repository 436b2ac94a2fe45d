CREATE INDEX fx_queue_by_type ON fx_queue (queue_type);
DROP INDEX fx_queue_by_type;
CREATE INDEX fx_queue_by_id ON fx_queue (message_id);
