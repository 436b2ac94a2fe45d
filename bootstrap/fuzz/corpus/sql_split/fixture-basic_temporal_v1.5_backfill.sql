DO $fx$
DECLARE
  n INTEGER;
BEGIN
  SELECT count(*) INTO n FROM fx_namespaces;
  IF n = 0 THEN
    RAISE EXCEPTION 'fixture: expected the system namespace; found none';
  END IF;
  UPDATE fx_namespaces SET note = E'backfilled\tby v1.5; ok' WHERE note IS NOT NULL;
END
$fx$;
