/* Test plug-in: `spin` never returns, to check timeouts, cancellation and that a stuck plug-in
 * does not starve other calls; `ok` returns at once. */
#include "extism_pdk.h"

EXPORT("spin") int32_t spin(void) {
  volatile uint64_t n = 0;
  for (;;) n++;
  return 0;
}

EXPORT("ok") int32_t ok(void) {
  pdk_output("ok", 2);
  return 0;
}
