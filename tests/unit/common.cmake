# The shared pieces of common/ and proto/ every daemon uses: the hash map,
# FNV-1a, Postgres literals, config_getopt and the device states.
syncv3_unit(test_shared)
