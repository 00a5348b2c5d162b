# bench_api: the api holding many long polls (RSS, wake-up latency); run
# through tests/bench/bench_api.sh.
add_executable(bench_api ${CMAKE_CURRENT_LIST_DIR}/bench_api.c)
target_link_libraries(bench_api PRIVATE common)
