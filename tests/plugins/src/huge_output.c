/* Test plug-in: `flood` outputs as many bytes as its input asks for (decimal), 8 MiB by default,
 * to check the output size limit. */
#include "extism_pdk.h"

EXPORT("flood") int32_t flood(void) {
  char digits[24];
  size_t n = pdk_input((uint8_t *)digits, sizeof digits);
  uint64_t size = n ? 0 : 8 * 1024 * 1024;
  for (size_t i = 0; i < n && i < sizeof digits; i++) size = size * 10 + (uint64_t)(digits[i] - '0');
  uint64_t block = extism_alloc(size);
  for (uint64_t i = 0; i < size; i++) extism_store_u8(block + i, 'x');
  extism_output_set(block, size);
  return 0;
}
