/* A minimal Extism plug-in kit for C: the kernel imports plus the few helpers the sample
 * plug-ins need (input, output, errors, config, a tiny JSON reader and writer).
 * Freestanding: no libc, so every plug-in built with it is a few KB. */
#ifndef EXOCLAW_EXTISM_PDK_H
#define EXOCLAW_EXTISM_PDK_H

#include <stdint.h>
#include <stddef.h>

#define EXTISM_IMPORT(name) __attribute__((import_module("extism:host/env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

EXTISM_IMPORT("input_length") uint64_t extism_input_length(void);
EXTISM_IMPORT("input_load_u8") uint8_t extism_input_load_u8(uint64_t offs);
EXTISM_IMPORT("alloc") uint64_t extism_alloc(uint64_t len);
EXTISM_IMPORT("free") void extism_free(uint64_t offs);
EXTISM_IMPORT("length") uint64_t extism_length(uint64_t offs);
EXTISM_IMPORT("store_u8") void extism_store_u8(uint64_t offs, uint8_t value);
EXTISM_IMPORT("load_u8") uint8_t extism_load_u8(uint64_t offs);
EXTISM_IMPORT("output_set") void extism_output_set(uint64_t offs, uint64_t len);
EXTISM_IMPORT("error_set") void extism_error_set(uint64_t offs);
EXTISM_IMPORT("config_get") uint64_t extism_config_get(uint64_t key_offs);
EXTISM_IMPORT("var_get") uint64_t extism_var_get(uint64_t key_offs);
EXTISM_IMPORT("var_set") void extism_var_set(uint64_t key_offs, uint64_t value_offs);
EXTISM_IMPORT("http_request") uint64_t extism_http_request(uint64_t req_offs, uint64_t body_offs);
EXTISM_IMPORT("http_status_code") int32_t extism_http_status_code(void);
EXTISM_IMPORT("http_headers") uint64_t extism_http_headers(void);

static size_t pdk_strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

/* Copies bytes into a new block of Extism memory and returns its offset. */
static uint64_t pdk_store(const void *data, size_t len) {
  uint64_t offs = extism_alloc(len);
  const uint8_t *p = (const uint8_t *)data;
  for (size_t i = 0; i < len; i++) extism_store_u8(offs + i, p[i]);
  return offs;
}

/* Copies a block of Extism memory into buf (at most cap bytes); returns the block's length. */
static size_t pdk_load(uint64_t offs, uint8_t *buf, size_t cap) {
  size_t len = (size_t)extism_length(offs);
  for (size_t i = 0; i < len && i < cap; i++) buf[i] = extism_load_u8(offs + i);
  return len;
}

/* Reads the call's input into buf (at most cap bytes); returns the input's full length. */
static size_t pdk_input(uint8_t *buf, size_t cap) {
  size_t len = (size_t)extism_input_length();
  for (size_t i = 0; i < len && i < cap; i++) buf[i] = extism_input_load_u8(i);
  return len;
}

static void pdk_output(const void *data, size_t len) { extism_output_set(pdk_store(data, len), len); }

static int32_t pdk_error(const char *message) {
  extism_error_set(pdk_store(message, pdk_strlen(message)));
  return 1;
}

/* A growable-free output buffer: plug-ins give it static storage and append to it. */
typedef struct {
  char *data;
  size_t len, cap;
  int overflow;
} pdk_buf;

static void buf_put(pdk_buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (b->len < b->cap) b->data[b->len++] = s[i];
    else b->overflow = 1;
  }
}

static void buf_puts(pdk_buf *b, const char *s) { buf_put(b, s, pdk_strlen(s)); }

/* Appends s as a JSON string literal, quotes included. */
static void buf_json_string(pdk_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') buf_puts(b, "\\\"");
    else if (c == '\\') buf_puts(b, "\\\\");
    else if (c == '\n') buf_puts(b, "\\n");
    else if (c == '\r') buf_puts(b, "\\r");
    else if (c == '\t') buf_puts(b, "\\t");
    else if (c < 0x20) {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_put(b, esc, 6);
    } else buf_put(b, (const char *)&c, 1);
  }
  buf_put(b, "\"", 1);
}

static void buf_uint(pdk_buf *b, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) buf_put(b, &tmp[--n], 1);
}

/* Finds the string value of a key at a nesting depth (1: the top-level object) in a JSON
 * document and decodes it into out (at most cap bytes). Returns the decoded length, or -1 if
 * the key is missing or its value is not a string. Good enough for flat tool arguments. */
static int json_get_string_at(const char *js, size_t n, int want_depth, const char *key, char *out, size_t cap) {
  size_t klen = pdk_strlen(key);
  int depth = 0;
  for (size_t i = 0; i < n; i++) {
    char c = js[i];
    if (c == '{' || c == '[') { depth++; continue; }
    if (c == '}' || c == ']') { depth--; continue; }
    if (c != '"') continue;
    size_t start = ++i;
    while (i < n && js[i] != '"') i += (js[i] == '\\') ? 2 : 1;
    if (i >= n) return -1;
    size_t end = i;
    size_t j = i + 1;
    while (j < n && (js[j] == ' ' || js[j] == '\t' || js[j] == '\n' || js[j] == '\r')) j++;
    if (j >= n || js[j] != ':') continue;
    if (depth != want_depth || end - start != klen) continue;
    int same = 1;
    for (size_t k = 0; k < klen; k++) same &= js[start + k] == key[k];
    if (!same) continue;
    j++;
    while (j < n && (js[j] == ' ' || js[j] == '\t' || js[j] == '\n' || js[j] == '\r')) j++;
    if (j >= n || js[j] != '"') return -1;
    size_t o = 0;
    for (j++; j < n && js[j] != '"'; j++) {
      char ch = js[j];
      if (ch == '\\' && j + 1 < n) {
        char e = js[++j];
        if (e == 'n') ch = '\n';
        else if (e == 't') ch = '\t';
        else if (e == 'r') ch = '\r';
        else if (e == 'b') ch = '\b';
        else if (e == 'f') ch = '\f';
        else if (e == 'u' && j + 4 < n) {
          unsigned v = 0;
          for (int k = 1; k <= 4; k++) {
            char h = js[j + k];
            v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
          }
          j += 4;
          if (v < 0x80) ch = (char)v;
          else if (v < 0x800) {
            if (o < cap) out[o++] = (char)(0xC0 | (v >> 6));
            ch = (char)(0x80 | (v & 0x3F));
          } else {
            if (o + 1 < cap) { out[o++] = (char)(0xE0 | (v >> 12)); out[o++] = (char)(0x80 | ((v >> 6) & 0x3F)); }
            ch = (char)(0x80 | (v & 0x3F));
          }
        } else ch = e;
      }
      if (o < cap) out[o++] = ch;
    }
    return (int)o;
  }
  return -1;
}

static int json_get_string(const char *js, size_t n, const char *key, char *out, size_t cap) {
  return json_get_string_at(js, n, 1, key, out, cap);
}

#endif
