# The api's parsers: sticky parameters (request bodies), since tokens and
# the /sync query string. Corpora: corpus/api_params, api_since, api_query.
set(API_DIR ${PROJECT_SOURCE_DIR}/api)
syncv3_fuzz(fuzz_api_params ${API_DIR}/params.c)
syncv3_fuzz(fuzz_api_since ${API_DIR}/sincetok.c)
syncv3_fuzz(fuzz_api_query ${API_DIR}/query.c ${API_DIR}/sincetok.c)
foreach(t fuzz_api_params fuzz_api_since fuzz_api_query)
	target_include_directories(${t} PRIVATE ${API_DIR})
endforeach()
# Sliding sync requests, both dialects. Corpus: corpus/ss_parse.
syncv3_fuzz(fuzz_ss_parse ${API_DIR}/ss_proto.c ${API_DIR}/sincetok.c)
target_include_directories(fuzz_ss_parse PRIVATE ${API_DIR})
