# Poller unit tests: the pure decisions in poller/policy.c.
syncv3_unit(test_poller_policy ${PROJECT_SOURCE_DIR}/poller/policy.c)
target_include_directories(test_poller_policy PRIVATE ${PROJECT_SOURCE_DIR}/poller)
# Lease statements against Postgres (SYNCV3_TEST_DB; skipped when unset).
syncv3_unit(test_poller_lease ${PROJECT_SOURCE_DIR}/poller/lease_sql.c
	${PROJECT_SOURCE_DIR}/poller/policy.c)
target_include_directories(test_poller_lease PRIVATE ${PROJECT_SOURCE_DIR}/poller)
