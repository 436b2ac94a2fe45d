CREATE TABLE fx_cluster_metadata (
  metadata_partition INTEGER NOT NULL,
  cluster_name VARCHAR(255) NOT NULL,
  data BYTEA NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (metadata_partition, cluster_name)
);
