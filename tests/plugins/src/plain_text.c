/* Test plug-in without describe: the export `shout` upper-cases its raw input. The operator
 * declares its tool. */
#include "extism_pdk.h"

EXPORT("shout") int32_t shout(void) {
  uint64_t n = extism_input_length();
  uint64_t block = extism_alloc(n);
  for (uint64_t i = 0; i < n; i++) {
    uint8_t c = extism_input_load_u8(i);
    extism_store_u8(block + i, c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c);
  }
  extism_output_set(block, n);
  return 0;
}
