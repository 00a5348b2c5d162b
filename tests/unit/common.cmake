# The shared pieces of common/ and proto/ every daemon uses: the hash map,
# FNV-1a, Postgres literals, config_getopt and the device states.
syncv3_unit(test_shared)

# common/, proto/, poller/ and accumulator/ call only downwards between
# their files (no loop of two or more files); the api still has one.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
	add_test(NAME callgraph_no_loops
		COMMAND ${Python3_EXECUTABLE}
			${PROJECT_SOURCE_DIR}/tests/tools/callgraph_loops.py --max 1
			common proto poller accumulator
		WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
	set_tests_properties(callgraph_no_loops PROPERTIES LABELS unit)
endif()

# common/metrics.c: the Prometheus text exposition format.
syncv3_unit(test_metrics)
