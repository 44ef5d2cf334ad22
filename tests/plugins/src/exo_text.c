/* Test plug-in in exoclaw's ABI: describe returns one tool, handle_tool_call answers with plain
 * (non-JSON) text, which exoclaw takes as the content. */
#include "extism_pdk.h"

static char args[65536];
static char text[65536];

EXPORT("describe") int32_t describe(void) {
  static const char d[] =
      "{\"name\":\"wordcount\",\"description\":\"Count the words in a text.\",\"input_schema\":{\"type\":"
      "\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}";
  pdk_output(d, sizeof d - 1);
  return 0;
}

EXPORT("handle_tool_call") int32_t handle_tool_call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  int len = json_get_string(args, n, "text", text, sizeof text);
  if (len < 0) return pdk_error("wordcount needs a string argument \"text\"");
  uint64_t words = 0;
  int in_word = 0;
  for (int i = 0; i < len; i++) {
    int space = text[i] == ' ' || text[i] == '\n' || text[i] == '\t';
    if (!space && !in_word) words++;
    in_word = !space;
  }
  char out_data[48];
  pdk_buf out = {out_data, 0, sizeof out_data, 0};
  buf_uint(&out, words);
  buf_puts(&out, words == 1 ? " word" : " words");
  pdk_output(out.data, out.len);
  return 0;
}
