# Accumulator unit tests (normalise is pure; the store tests need
# SYNCV3_TEST_DB and skip without it). The fuzz target is in tests/fuzz.
set(ACC_DIR ${PROJECT_SOURCE_DIR}/accumulator)
set(ACC_PARSE_SRCS ${ACC_DIR}/normalise.c ${ACC_DIR}/jscan.c)

add_executable(test_normalise test_normalise.c ${ACC_PARSE_SRCS})
target_link_libraries(test_normalise PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_normalise PRIVATE ${ACC_DIR})
target_compile_definitions(test_normalise PRIVATE
	DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data/sync")
add_test(NAME test_normalise COMMAND test_normalise)
set_tests_properties(test_normalise PROPERTIES LABELS unit)

# The store's files, below ingest.c and notify.c; acc_query.c holds the
# reader-side queries only the tests need.
set(ACC_STORE_SRCS ${ACC_DIR}/store.c ${ACC_DIR}/rooms.c ${ACC_DIR}/apply.c
	${ACC_DIR}/cleanup.c ${ACC_DIR}/pos.c ${ACC_DIR}/db.c
	${ACC_DIR}/notice.c ${ACC_DIR}/sqlarr.c ${ACC_DIR}/txn.c
	${ACC_DIR}/redact.c ${ACC_DIR}/redaction.c)
add_executable(test_acc_store test_store.c acc_query.c ${ACC_PARSE_SRCS}
	${ACC_STORE_SRCS})
target_link_libraries(test_acc_store PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_acc_store PRIVATE ${ACC_DIR})
target_compile_definitions(test_acc_store PRIVATE
	DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data/sync")
add_test(NAME test_acc_store COMMAND test_acc_store)
set_tests_properties(test_acc_store PROPERTIES LABELS unit)

# The redaction algorithm (redact.c is pure).
add_executable(test_redact test_redact.c ${ACC_DIR}/redact.c)
target_link_libraries(test_redact PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_redact PRIVATE ${ACC_DIR})
add_test(NAME test_redact COMMAND test_redact)
set_tests_properties(test_redact PROPERTIES LABELS unit)
