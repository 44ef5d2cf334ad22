/* count_vowels: a C port of the Extism project's count_vowels demo plug-in (Rust PDK), kept
 * byte-for-byte compatible in behaviour: export `count_vowels`, input a string, output
 * {"count": N, "total": T, "vowels": "..."} where the vowels come from config key "vowels"
 * (default "aeiouAEIOU") and total is kept in the Extism var "total" across calls of one
 * instance. It has no describe: exoclaw runs it as a plain plug-in with operator-declared tools. */
#include "extism_pdk.h"

static char vowels[256] = "aeiouAEIOU";
static char out_data[512];

static const char KEY_TOTAL[] = "total";

/* The kernel takes ownership of a key handle, so each var call gets a fresh one. */
static uint64_t total_key(void) { return pdk_store(KEY_TOTAL, sizeof KEY_TOTAL - 1); }

static uint64_t read_total(void) {
  uint64_t v = extism_var_get(total_key());
  if (!v) return 0;
  char digits[24];
  size_t n = pdk_load(v, (uint8_t *)digits, sizeof digits);
  uint64_t total = 0;
  for (size_t i = 0; i < n && i < sizeof digits; i++) total = total * 10 + (uint64_t)(digits[i] - '0');
  return total;
}

EXPORT("count_vowels") int32_t count_vowels(void) {
  static const char key_vowels[] = "vowels";
  uint64_t cfg = extism_config_get(pdk_store(key_vowels, sizeof key_vowels - 1));
  size_t nv = 10;
  if (cfg) {
    nv = pdk_load(cfg, (uint8_t *)vowels, sizeof vowels - 1);
    if (nv > sizeof vowels - 1) nv = sizeof vowels - 1;
    vowels[nv] = 0;
  }
  uint64_t n = extism_input_length();
  uint64_t count = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint8_t c = extism_input_load_u8(i);
    for (size_t k = 0; k < nv; k++) {
      if ((uint8_t)vowels[k] == c) {
        count++;
        break;
      }
    }
  }
  uint64_t total = read_total() + count;
  char digits[24];
  pdk_buf t = {digits, 0, sizeof digits, 0};
  buf_uint(&t, total);
  extism_var_set(total_key(), pdk_store(t.data, t.len));

  pdk_buf out = {out_data, 0, sizeof out_data, 0};
  buf_puts(&out, "{\"count\":");
  buf_uint(&out, count);
  buf_puts(&out, ",\"total\":");
  buf_uint(&out, total);
  buf_puts(&out, ",\"vowels\":");
  buf_json_string(&out, vowels, nv);
  buf_puts(&out, "}");
  pdk_output(out.data, out.len);
  return 0;
}
