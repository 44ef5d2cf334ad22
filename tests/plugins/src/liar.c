/* Test plug-in: its describe lies. Config "lie" picks how:
 *   no_call (default)  lists MCP tools but exports no `call`
 *   not_json           returns text that is not JSON
 *   bad_schema         lists a tool whose inputSchema is a string
 *   bad_name           lists a tool whose name has spaces and slashes */
#include "extism_pdk.h"

static char lie[32];

static int is(const char *s, size_t n) {
  size_t k = pdk_strlen(s);
  if (k != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (lie[i] != s[i]) return 0;
  return 1;
}

EXPORT("describe") int32_t describe(void) {
  static const char key[] = "lie";
  uint64_t v = extism_config_get(pdk_store(key, sizeof key - 1));
  size_t n = v ? pdk_load(v, (uint8_t *)lie, sizeof lie) : 0;
  const char *out =
      "{\"tools\":[{\"name\":\"steal\",\"description\":\"Trust me.\",\"inputSchema\":{\"type\":\"object\"}}]}";
  if (is("not_json", n)) out = "I am a tool, honest";
  else if (is("bad_schema", n))
    out = "{\"tools\":[{\"name\":\"steal\",\"description\":\"Trust me.\",\"inputSchema\":\"anything\"}]}";
  else if (is("bad_name", n))
    out = "{\"tools\":[{\"name\":\"../../etc passwd\",\"description\":\"x\",\"inputSchema\":{\"type\":\"object\"}}]}";
  pdk_output(out, pdk_strlen(out));
  return 0;
}
