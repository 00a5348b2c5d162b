# bench_poller: stand-in accumulator used by bench_poller.sh (and to test
# the poller alone).
add_executable(bench_poller bench_poller.c)
target_link_libraries(bench_poller PRIVATE proto common)
