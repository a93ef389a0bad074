"""Why a pg_index run made no plan: the codes of plan.py's and partitions.py's refusals, in one place so
that both (and preflight, which words each one) name the same code. Plain strings, no imports."""

BEING_BUILT = "being_built"  # another session builds the index: wait (wait: true) or refuse
INVALID = "invalid"  # the index is INVALID and on_invalid is fail
MISMATCH = "mismatch"  # the index exists with another definition and on_mismatch is fail
CONSTRAINT = "constraint"  # a PRIMARY KEY, UNIQUE or EXCLUDE constraint uses the index
REPLACE_PARTITIONED = "replace_partitioned"  # on_mismatch: replace of a partitioned index
MISSING = "missing"  # there is no index to rebuild
PARTITION_KEY = "partition_key"  # a UNIQUE index that leaves out a partition key column
PARTITION_OWNER = "partition_owner"  # a partition the login role may not index
PARTITION_FOREIGN = "partition_foreign"  # a foreign table among the partitions
PARTITION_NAME = "partition_name"  # the partition index's name is taken by another index
PARTITION_ATTACHED_INVALID = "partition_attached_invalid"  # an INVALID index attached to ours
