# syncv3-bench-ingest: sustained ingest through the accumulator (and the
# driver of tests/integration/t_acc_crash.sh).
add_executable(syncv3-bench-ingest ${CMAKE_CURRENT_LIST_DIR}/bench_ingest.c)
target_link_libraries(syncv3-bench-ingest PRIVATE proto common)
