# syncv3-api unit tests: pure logic only (since tokens, sticky parameters
# and negotiation, room names and case folding, a held-back pass-through
# body read off its connection).
foreach(t since params roomname body)
	if(t STREQUAL "since")
		set(src sincetok.c ${PROJECT_SOURCE_DIR}/api/query.c)
	elseif(t STREQUAL "body")	# a held-back pass-through body
		set(src proxy_body.c)
	else()
		set(src ${t}.c)
	endif()
	add_executable(test_api_${t} test_api_${t}.c
		${PROJECT_SOURCE_DIR}/api/${src})
	target_link_libraries(test_api_${t} PRIVATE proto common
		PkgConfig::CMOCKA)
	target_include_directories(test_api_${t} PRIVATE
		${PROJECT_SOURCE_DIR}/api)
	add_test(NAME test_api_${t} COMMAND test_api_${t})
	set_tests_properties(test_api_${t} PROPERTIES LABELS unit)
endforeach()

# Every statement of api/sql.c PREPAREd against the migrated schema
# (SYNCV3_TEST_DB; skipped without).
add_executable(test_api_sql test_api_sql.c ${PROJECT_SOURCE_DIR}/api/sql.c)
target_link_libraries(test_api_sql PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_api_sql PRIVATE ${PROJECT_SOURCE_DIR}/api)
add_test(NAME test_api_sql COMMAND test_api_sql)
set_tests_properties(test_api_sql PROPERTIES LABELS unit)

# The api's files call each other without loops (issue #10): a request
# path reaches auth, session, longpoll and the streams, which answer
# through completions, never by naming it. Only the pass-through and
# http.c, which routes to it and owns its connections, call each other.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
	add_test(NAME callgraph_api
		COMMAND ${Python3_EXECUTABLE}
			${PROJECT_SOURCE_DIR}/tests/tools/callgraph_loops.py --max 2
			api
		WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
	set_tests_properties(callgraph_api PROPERTIES LABELS unit)
endif()

# The typing table (ephemeral.c), fed notices and Postgres answers by hand.
add_executable(test_api_ephemeral test_api_ephemeral.c
	${PROJECT_SOURCE_DIR}/api/ephemeral.c)
target_link_libraries(test_api_ephemeral PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_api_ephemeral PRIVATE ${PROJECT_SOURCE_DIR}/api)
add_test(NAME test_api_ephemeral COMMAND test_api_ephemeral)
set_tests_properties(test_api_ephemeral PROPERTIES LABELS unit)
# Sliding sync on the wire: both dialects' parser and writer, pos tokens.
add_executable(test_ss_proto test_ss_proto.c
	${PROJECT_SOURCE_DIR}/api/ss_proto.c
	${PROJECT_SOURCE_DIR}/api/sincetok.c)
target_link_libraries(test_ss_proto PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_ss_proto PRIVATE ${PROJECT_SOURCE_DIR}/api)
add_test(NAME test_ss_proto COMMAND test_ss_proto)
set_tests_properties(test_ss_proto PROPERTIES LABELS unit)

# The sliding sync extensions' pure half (api/ss_ext_cfg.c).
add_executable(test_ss_ext test_ss_ext.c ${PROJECT_SOURCE_DIR}/api/ss_ext_cfg.c)
target_link_libraries(test_ss_ext PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_ss_ext PRIVATE ${PROJECT_SOURCE_DIR}/api)
add_test(NAME test_ss_ext COMMAND test_ss_ext)
set_tests_properties(test_ss_ext PROPERTIES LABELS unit)

# The extensions' statement against the migrated schema (SYNCV3_TEST_DB).
add_executable(test_ss_ext_sql test_ss_ext_sql.c ${PROJECT_SOURCE_DIR}/api/sql.c)
target_link_libraries(test_ss_ext_sql PRIVATE proto common PkgConfig::CMOCKA)
target_include_directories(test_ss_ext_sql PRIVATE ${PROJECT_SOURCE_DIR}/api)
add_test(NAME test_ss_ext_sql COMMAND test_ss_ext_sql)
set_tests_properties(test_ss_ext_sql PROPERTIES LABELS unit)
