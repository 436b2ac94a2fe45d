ALTER TABLE fx_shards ADD COLUMN updated_at TIMESTAMP;

CREATE FUNCTION fx_touch() RETURNS trigger AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER fx_shards_touch BEFORE UPDATE ON fx_shards
  FOR EACH ROW EXECUTE FUNCTION fx_touch();
