/* libgpvm3: PVM's group functions are in libpvm3 under mpvm; this library
 * only depends on it, so programs linked with -lgpvm3 find them. */
int mpvm_gpvm3_version(void) { return 30406; }
