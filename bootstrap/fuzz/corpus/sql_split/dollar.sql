DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$;
DO $$ BEGIN PERFORM 1; END $$;
SELECT $1, a$b$c FROM x;