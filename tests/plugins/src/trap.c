/* Test plug-in: `boom` executes an `unreachable` instruction; `fail` sets an Extism error. */
#include "extism_pdk.h"

EXPORT("boom") int32_t boom(void) {
  __builtin_trap();
  return 0;
}

EXPORT("fail") int32_t fail(void) { return pdk_error("the widget is not configured"); }
