/* Test plug-in in the MCP-style ABI: describe lists two tools, call dispatches on params.name. */
#include "extism_pdk.h"

static char args[65536];
static char name[64];
static char text[32768];
static char out_data[65536 * 2];

EXPORT("describe") int32_t describe(void) {
  static const char d[] =
      "{\"tools\":["
      "{\"name\":\"upper\",\"description\":\"Upper-case ASCII text.\",\"inputSchema\":{\"type\":\"object\","
      "\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}},"
      "{\"name\":\"reverse\",\"description\":\"Reverse text byte by byte.\",\"inputSchema\":{\"type\":"
      "\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}]}";
  pdk_output(d, sizeof d - 1);
  return 0;
}

EXPORT("call") int32_t call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  int name_len = json_get_string_at(args, n, 2, "name", name, sizeof name);
  int len = json_get_string_at(args, n, 3, "text", text, sizeof text);
  pdk_buf out = {out_data, 0, sizeof out_data, 0};
  if (len < 0) {
    buf_puts(&out, "{\"content\":[{\"type\":\"text\",\"text\":\"missing text\"}],\"isError\":true}");
  } else {
    if (name_len == 5 && name[0] == 'u') {
      for (int i = 0; i < len; i++)
        if (text[i] >= 'a' && text[i] <= 'z') text[i] = (char)(text[i] - 32);
    } else {
      for (int i = 0; i < len / 2; i++) {
        char c = text[i];
        text[i] = text[len - 1 - i];
        text[len - 1 - i] = c;
      }
    }
    buf_puts(&out, "{\"content\":[{\"type\":\"text\",\"text\":");
    buf_json_string(&out, text, (size_t)len);
    buf_puts(&out, "}],\"isError\":false}");
  }
  pdk_output(out.data, out.len);
  return 0;
}
