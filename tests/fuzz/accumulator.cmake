# The v2 body normaliser (accumulator/normalise.c + jscan.c).
set(ACC_DIR ${PROJECT_SOURCE_DIR}/accumulator)
syncv3_fuzz(fuzz_normalise ${ACC_DIR}/normalise.c ${ACC_DIR}/jscan.c)
target_include_directories(fuzz_normalise PRIVATE ${ACC_DIR})
