/* echo: repeats its input. exoclaw ABI (describe / handle_tool_call) plus a raw `echo` export
 * whose output is its input byte for byte (used by bench/plugin_call.py). */
#include "extism_pdk.h"

#define MAX_TEXT (256 * 1024)

static char args[MAX_TEXT];
static char text[MAX_TEXT];
static char out_data[MAX_TEXT * 6 + 64];

EXPORT("describe") int32_t describe(void) {
  static const char d[] =
      "{\"name\":\"echo\",\"description\":\"Repeat the given text back unchanged.\","
      "\"input_schema\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\","
      "\"description\":\"The text to repeat.\"}},\"required\":[\"text\"]}}";
  pdk_output(d, sizeof d - 1);
  return 0;
}

EXPORT("handle_tool_call") int32_t handle_tool_call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  if (n > sizeof args) return pdk_error("echo: arguments larger than 256 KiB");
  int len = json_get_string(args, n, "text", text, sizeof text);
  pdk_buf out = {out_data, 0, sizeof out_data, 0};
  if (len < 0) {
    buf_puts(&out, "{\"content\":\"echo needs a string argument \\\"text\\\".\",\"is_error\":true}");
  } else {
    buf_puts(&out, "{\"content\":");
    buf_json_string(&out, text, (size_t)len);
    buf_puts(&out, ",\"is_error\":false}");
  }
  pdk_output(out.data, out.len);
  return 0;
}

EXPORT("echo") int32_t echo(void) {
  uint64_t n = extism_input_length();
  uint64_t offs = extism_alloc(n);
  for (uint64_t i = 0; i < n; i++) extism_store_u8(offs + i, extism_input_load_u8(i));
  extism_output_set(offs, n);
  return 0;
}
