# The poller's /sync body scan (poller/policy.c), fed whole and in random
# chunks. Corpus: corpus/poller_scan.
syncv3_fuzz(fuzz_poller_scan ${PROJECT_SOURCE_DIR}/poller/policy.c)
target_include_directories(fuzz_poller_scan PRIVATE ${PROJECT_SOURCE_DIR}/poller)
target_link_libraries(fuzz_poller_scan PRIVATE PkgConfig::LIBCURL)
