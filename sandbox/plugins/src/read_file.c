/* read_file: reads and writes files through WASI, so only directories in the grant's
 * allowed_paths are reachable (and read-only ones cannot be written). MCP-style ABI: describe /
 * call with the tools "read_file" and "write_file". Built against wasi-libc.
 *
 * A path outside every granted directory, a `../` escape or a write to a read-only grant is
 * refused by the WASI host; the plug-in passes such refusals on as an Extism error starting with
 * "host_denied:", which exoclaw reports as a host_denied error. Other I/O errors are tool errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/libc-find-relpath.h>

#include "extism_pdk.h"

#define MAX_FILE (256 * 1024)
/* JSON escaping can make text up to six times longer. */
#define MAX_ARGS (MAX_FILE * 6 + 8192)

static char args[MAX_ARGS];
static char name[64];
static char path[4096];
static char content[MAX_ARGS];
static char file_data[MAX_FILE];

static const char TOOLS[] =
    "{\"tools\":["
    "{\"name\":\"read_file\",\"description\":\"Read a text file (up to 256 KiB) from a directory the "
    "operator granted.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\","
    "\"description\":\"Absolute path inside a granted directory, e.g. /data/notes.txt.\"}},"
    "\"required\":[\"path\"]}},"
    "{\"name\":\"write_file\",\"description\":\"Write a text file in a directory the operator granted "
    "read-write.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"},"
    "\"content\":{\"type\":\"string\"}},\"required\":[\"path\",\"content\"]}}]}";

EXPORT("describe") int32_t describe(void) {
  pdk_output(TOOLS, sizeof TOOLS - 1);
  return 0;
}

static int32_t result(const char *text, size_t len, int is_error) {
  pdk_buf out = {content, 0, sizeof content, 0};
  buf_puts(&out, "{\"content\":[{\"type\":\"text\",\"text\":");
  buf_json_string(&out, text, len);
  buf_puts(&out, is_error ? "}],\"isError\":true}" : "}],\"isError\":false}");
  pdk_output(out.data, out.len);
  return 0;
}

static int outside_grants(void) {
  const char *prefix, *relative;
  return path[0] == '/' && __wasilibc_find_abspath(path, &prefix, &relative) == -1;
}

static int32_t io_error(const char *verb) {
  char message[4300];
  pdk_buf m = {message, 0, sizeof message - 1, 0};
  int outside = outside_grants();
  int refused = errno == EPERM || errno == ENOTCAPABLE || errno == EROFS;
  int denied = outside || refused;
  if (denied) buf_puts(&m, "host_denied: ");
  buf_puts(&m, verb);
  buf_puts(&m, " ");
  buf_puts(&m, path);
  buf_puts(&m, ": ");
  buf_puts(&m, outside   ? "the path is outside the granted directories"
               : refused ? "not permitted by the grant (outside it, or read-only)"
                         : strerror(errno));
  message[m.len] = 0;
  if (denied) return pdk_error(message);
  return result(message, m.len, 1);
}

static int32_t read_file(void) {
  FILE *f = fopen(path, "rb");
  if (!f) return io_error("cannot open");
  size_t n = fread(file_data, 1, sizeof file_data, f);
  int too_big = n == sizeof file_data && fgetc(f) != EOF;
  fclose(f);
  if (too_big) return result("the file is larger than 256 KiB", 30, 1);
  return result(file_data, n, 0);
}

static int32_t write_file(size_t n) {
  int len = json_get_string_at(args, n, 3, "content", file_data, sizeof file_data);
  if (len < 0) return result("write_file needs a string argument \"content\"", 44, 1);
  FILE *f = fopen(path, "wb");
  if (!f) return io_error("cannot write");
  size_t written = fwrite(file_data, 1, (size_t)len, f);
  if (fclose(f) != 0 || written != (size_t)len) return io_error("cannot write");
  char message[64];
  pdk_buf m = {message, 0, sizeof message, 0};
  buf_puts(&m, "wrote ");
  buf_uint(&m, written);
  buf_puts(&m, " bytes");
  return result(m.data, m.len, 0);
}

EXPORT("call") int32_t call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  if (n > sizeof args) return result("the request is too large", 24, 1);
  int name_len = json_get_string_at(args, n, 2, "name", name, sizeof name - 1);
  if (name_len < 0) return result("no tool name in params.name", 27, 1);
  name[name_len] = 0;
  int path_len = json_get_string_at(args, n, 3, "path", path, sizeof path - 1);
  if (path_len < 0) return result("the tool needs a string argument \"path\"", 39, 1);
  path[path_len] = 0;
  if (strcmp(name, "read_file") == 0) return read_file();
  if (strcmp(name, "write_file") == 0) return write_file(n);
  return result("unknown tool; read_file has read_file and write_file", 52, 1);
}
