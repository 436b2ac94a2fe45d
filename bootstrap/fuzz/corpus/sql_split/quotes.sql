INSERT INTO t VALUES ('x;y', 'it''s; fine', E'a\';b', "we;ird""q");
