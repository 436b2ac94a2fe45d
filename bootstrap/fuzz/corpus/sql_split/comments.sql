-- header; not a statement
CREATE TABLE a (x INT) /* a; /* nested; */ still */;
-/**/-x;
/* tail */