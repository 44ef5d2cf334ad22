/* Test plug-in: `spin` never returns, to check timeouts, cancellation and that a stuck plug-in
 * does not starve other calls. */
#include "extism_pdk.h"

EXPORT("spin") int32_t spin(void) {
  volatile uint64_t n = 0;
  for (;;) n++;
  return 0;
}
