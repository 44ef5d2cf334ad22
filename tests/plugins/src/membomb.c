/* Test plug-in: allocates without end, to check the memory limit. `alloc` grows Extism's kernel
 * memory, `grow` the module's own linear memory. */
#include "extism_pdk.h"

EXPORT("alloc") int32_t alloc_forever(void) {
  for (;;) {
    uint64_t block = extism_alloc(1024 * 1024);
    extism_store_u8(block, 1);
  }
  return 0;
}

EXPORT("grow") int32_t grow_forever(void) {
  for (;;) {
    if (__builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1) __builtin_trap();
  }
  return 0;
}
