/* http_get: fetches a URL through Extism's HTTP host function, so only the hosts in the grant's
 * allowed_hosts can be reached. MCP-style ABI: describe / call, one tool "fetch". */
#include "extism_pdk.h"

#define MAX_ARGS 16384

static char args[MAX_ARGS];
static char name[64];
static char url[8192];
static char request[8192 * 2 + 64];

static const char TOOLS[] =
    "{\"tools\":[{\"name\":\"fetch\",\"description\":\"Fetch a URL with HTTP GET and return the response "
    "body as text. Only hosts the operator granted can be reached.\",\"inputSchema\":{\"type\":\"object\","
    "\"properties\":{\"url\":{\"type\":\"string\",\"description\":\"An http:// or https:// URL.\"}},"
    "\"required\":[\"url\"]}}]}";

EXPORT("describe") int32_t describe(void) {
  pdk_output(TOOLS, sizeof TOOLS - 1);
  return 0;
}

static int32_t tool_error(const char *message) {
  char data[512];
  pdk_buf out = {data, 0, sizeof data, 0};
  buf_puts(&out, "{\"content\":[{\"type\":\"text\",\"text\":");
  buf_json_string(&out, message, pdk_strlen(message));
  buf_puts(&out, "}],\"isError\":true}");
  pdk_output(out.data, out.len);
  return 0;
}

/* Streams the response body into a new Extism block as an MCP text result, JSON-escaped, without
 * a fixed-size buffer (the body can be as large as the grant's max_http_response_bytes). */
static void output_body(uint64_t body, int32_t status) {
  static const char hex[] = "0123456789abcdef";
  uint64_t len = body ? extism_length(body) : 0;
  char prefix[96];
  pdk_buf p = {prefix, 0, sizeof prefix, 0};
  buf_puts(&p, "{\"content\":[{\"type\":\"text\",\"text\":\"");
  if (status >= 400) {
    buf_puts(&p, "HTTP ");
    buf_uint(&p, (uint64_t)status);
    buf_puts(&p, ": ");
  }
  const char *suffix = status >= 400 ? "\"}],\"isError\":true}" : "\"}],\"isError\":false}";
  uint64_t cap = p.len + len * 6 + pdk_strlen(suffix);
  uint64_t out = extism_alloc(cap);
  uint64_t o = 0;
  for (size_t i = 0; i < p.len; i++) extism_store_u8(out + o++, (uint8_t)prefix[i]);
  for (uint64_t i = 0; i < len; i++) {
    uint8_t c = extism_load_u8(body + i);
    if (c == '"' || c == '\\') {
      extism_store_u8(out + o++, '\\');
      extism_store_u8(out + o++, c);
    } else if (c < 0x20) {
      const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      for (int k = 0; k < 6; k++) extism_store_u8(out + o++, (uint8_t)esc[k]);
    } else {
      extism_store_u8(out + o++, c);
    }
  }
  for (const char *s = suffix; *s; s++) extism_store_u8(out + o++, (uint8_t)*s);
  extism_output_set(out, o);
}

EXPORT("call") int32_t call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  if (n > sizeof args) return tool_error("fetch: the request is larger than 16 KiB.");
  int name_len = json_get_string_at(args, n, 2, "name", name, sizeof name - 1);
  if (name_len != 5 || name[0] != 'f' || name[1] != 'e' || name[2] != 't' || name[3] != 'c' || name[4] != 'h')
    return tool_error("http_get has one tool, \"fetch\".");
  int url_len = json_get_string_at(args, n, 3, "url", url, sizeof url);
  if (url_len < 0 || url_len >= (int)sizeof url) return tool_error("fetch needs a string argument \"url\".");
  pdk_buf req = {request, 0, sizeof request, 0};
  buf_puts(&req, "{\"method\":\"GET\",\"url\":");
  buf_json_string(&req, url, (size_t)url_len);
  buf_puts(&req, ",\"headers\":{\"User-Agent\":\"exoclaw-http_get/1\"}}");
  uint64_t body = extism_http_request(pdk_store(req.data, req.len), 0);
  output_body(body, extism_http_status_code());
  return 0;
}
