# syncv3-loadgen: the load generator behind tests/bench/run.sh (issue #6):
# drives the simulated homeserver's admin API and the api as clients do.
add_executable(syncv3-loadgen ${CMAKE_CURRENT_LIST_DIR}/loadgen.c)
target_link_libraries(syncv3-loadgen PRIVATE common m)
