/* Test plug-in that makes HTTP requests through the Extism kernel imports every Extism PDK uses
 * (`extism:host/env` `http_request`, `http_status_code`, `http_headers`) and reports everything it
 * can see, so tests can check that the grant is enforced and that no injected secret reaches the
 * plug-in.
 *
 * fetch: the input is an Extism HTTP request ({"method", "url", "headers"}), passed as is.
 * send:  the input is the request, a newline, then the request body.
 * Output: {"status": N, "headers": <http_headers() or null>, "config": <config "api_key" or null>,
 *          "request": <the input>, "body": "<the response body>"}. */
#include "extism_pdk.h"

#define CAP (256 * 1024)

static char input[CAP];
static char body[CAP];
static char headers[CAP];
static char config[4096];
static char out_data[CAP * 7];
static pdk_buf out = {out_data, 0, sizeof out_data, 0};

/* A JSON string of any bytes, in ASCII: unlike buf_json_string, bytes from 0x7f up are escaped too,
 * as a response body need not be UTF-8 and the output must be. */
static void put_json_string(const char *s, uint64_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_put(&out, "\"", 1);
  for (uint64_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_put(&out, e, 2);
    } else if (c < 0x20 || c >= 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_put(&out, e, 6);
    } else {
      buf_put(&out, (const char *)&c, 1);
    }
  }
  buf_put(&out, "\"", 1);
}

/* Copies a block's bytes into buf; returns how many (0 for the null offset). */
static uint64_t load(uint64_t h, char *buf, uint64_t cap) {
  if (!h) return 0;
  uint64_t n = pdk_load(h, (uint8_t *)buf, cap);
  return n < cap ? n : cap;
}

static int32_t request(uint64_t request_len, uint64_t body_handle) {
  uint64_t req = pdk_store(input, request_len);
  uint64_t res = extism_http_request(req, body_handle);
  int32_t status = extism_http_status_code();
  uint64_t body_len = load(res, body, sizeof body);
  uint64_t headers_len = load(extism_http_headers(), headers, sizeof headers);
  uint64_t config_len = load(extism_config_get(pdk_store("api_key", 7)), config, sizeof config);
  out.len = 0;
  buf_puts(&out, "{\"status\":");
  buf_uint(&out, (uint64_t)status);
  buf_puts(&out, ",\"headers\":");
  if (headers_len) buf_put(&out, headers, headers_len);
  else buf_puts(&out, "null");
  buf_puts(&out, ",\"config\":");
  if (config_len) put_json_string(config, config_len);
  else buf_puts(&out, "null");
  buf_puts(&out, ",\"request\":");
  put_json_string(input, extism_input_length() < sizeof input ? extism_input_length() : sizeof input);
  buf_puts(&out, ",\"body\":");
  put_json_string(body, body_len);
  buf_puts(&out, "}");
  pdk_output(out.data, out.len);
  return 0;
}

EXPORT("fetch") int32_t fetch(void) {
  uint64_t n = pdk_input((uint8_t *)input, sizeof input);
  if (n > sizeof input) return pdk_error("input too large");
  return request(n, 0);
}

EXPORT("send") int32_t send(void) {
  uint64_t n = pdk_input((uint8_t *)input, sizeof input);
  if (n > sizeof input) return pdk_error("input too large");
  uint64_t split = 0;
  while (split < n && input[split] != '\n') split++;
  uint64_t body_handle = 0;
  if (split < n) body_handle = pdk_store(input + split + 1, n - split - 1);
  return request(split, body_handle);
}
