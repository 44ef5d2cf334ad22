/* calc: evaluates an arithmetic expression (+ - * / % ^, parentheses, unary minus, decimals).
 * exoclaw ABI: describe / handle_tool_call with {"expr": "6*7"} -> "42". Bad input gives a
 * tool error that says what is wrong and where. */
#include "extism_pdk.h"

#define MAX_EXPR 4096

static char args[MAX_EXPR * 2];
static char expr[MAX_EXPR];
static char out_data[MAX_EXPR * 2];

typedef struct {
  const char *s;
  int pos, len, depth;
  const char *error;
  int error_pos;
} parser;

static double parse_sum(parser *p);

static void fail(parser *p, const char *message) {
  if (!p->error) {
    p->error = message;
    p->error_pos = p->pos;
  }
}

static void skip_spaces(parser *p) {
  while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n')) p->pos++;
}

static double parse_number(parser *p) {
  double v = 0;
  int digits = 0;
  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
    v = v * 10 + (p->s[p->pos++] - '0');
    digits++;
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    double scale = 0.1;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
      v += (p->s[p->pos++] - '0') * scale;
      scale /= 10;
      digits++;
    }
  }
  if (!digits) fail(p, "expected a number");
  return v;
}

static double parse_atom(parser *p) {
  skip_spaces(p);
  if (p->pos >= p->len) {
    fail(p, "unexpected end of expression");
    return 0;
  }
  char c = p->s[p->pos];
  if (c == '-' || c == '+') {
    p->pos++;
    double v = parse_atom(p);
    return c == '-' ? -v : v;
  }
  if (c == '(') {
    if (++p->depth > 200) {
      fail(p, "parentheses nested too deeply");
      return 0;
    }
    p->pos++;
    double v = parse_sum(p);
    skip_spaces(p);
    if (p->pos >= p->len || p->s[p->pos] != ')') fail(p, "expected ')'");
    else p->pos++;
    p->depth--;
    return v;
  }
  if ((c >= '0' && c <= '9') || c == '.') return parse_number(p);
  fail(p, "unexpected character");
  return 0;
}

static double power(double base, double exp, parser *p) {
  long long n = (long long)exp;
  if ((double)n != exp || n < -1024 || n > 1024) {
    fail(p, "the exponent must be a whole number between -1024 and 1024");
    return 0;
  }
  double r = 1;
  for (long long i = 0; i < (n < 0 ? -n : n); i++) r *= base;
  return n < 0 ? 1 / r : r;
}

static double parse_power(parser *p) {
  double base = parse_atom(p);
  skip_spaces(p);
  if (p->pos < p->len && p->s[p->pos] == '^') {
    p->pos++;
    double exp = parse_power(p);
    return power(base, exp, p);
  }
  return base;
}

static double parse_product(parser *p) {
  double v = parse_power(p);
  for (;;) {
    skip_spaces(p);
    if (p->error || p->pos >= p->len) return v;
    char op = p->s[p->pos];
    if (op != '*' && op != '/' && op != '%') return v;
    p->pos++;
    int at = p->pos;
    double r = parse_power(p);
    if ((op == '/' || op == '%') && r == 0) {
      p->pos = at;
      fail(p, "division by zero");
      return 0;
    }
    if (op == '*') v *= r;
    else if (op == '/') v /= r;
    else v = v - r * (double)(long long)(v / r);
  }
}

static double parse_sum(parser *p) {
  double v = parse_product(p);
  for (;;) {
    skip_spaces(p);
    if (p->error || p->pos >= p->len) return v;
    char op = p->s[p->pos];
    if (op != '+' && op != '-') return v;
    p->pos++;
    double r = parse_product(p);
    v = op == '+' ? v + r : v - r;
  }
}

/* Writes v with up to 12 significant digits, as an integer when it is one. */
static void buf_number(pdk_buf *b, double v) {
  if (v != v) {
    buf_puts(b, "NaN");
    return;
  }
  if (v < 0) {
    buf_puts(b, "-");
    v = -v;
  }
  if (v > 1e300) {
    buf_puts(b, "Infinity");
    return;
  }
  int exp10 = 0;
  if (v >= 1e15 || (v > 0 && v < 1e-6)) {
    while (v >= 10) { v /= 10; exp10++; }
    while (v < 1) { v *= 10; exp10--; }
  }
  double rounded = (double)(uint64_t)(v * 1e10 + 0.5) / 1e10;
  uint64_t whole = (uint64_t)rounded;
  double frac = rounded - (double)whole;
  buf_uint(b, whole);
  int int_digits = 0;
  for (uint64_t w = whole; w; w /= 10) int_digits++;
  int frac_digits = 12 - int_digits;
  if (frac_digits > 10) frac_digits = 10;
  if (frac > 0 && frac_digits > 0) {
    char tmp[16];
    uint64_t scale = 1;
    for (int i = 0; i < frac_digits; i++) scale *= 10;
    uint64_t f = (uint64_t)(frac * (double)scale + 0.5);
    if (f >= scale) f = scale - 1;
    int n = frac_digits;
    while (n > 0 && f % 10 == 0) { f /= 10; n--; }
    if (n > 0) {
      for (int i = n - 1; i >= 0; i--) { tmp[i] = (char)('0' + f % 10); f /= 10; }
      buf_puts(b, ".");
      buf_put(b, tmp, (size_t)n);
    }
  }
  if (exp10) {
    buf_puts(b, "e");
    if (exp10 < 0) { buf_puts(b, "-"); exp10 = -exp10; }
    buf_uint(b, (uint64_t)exp10);
  }
}

EXPORT("describe") int32_t describe(void) {
  static const char d[] =
      "{\"name\":\"calc\",\"description\":\"Evaluate an arithmetic expression with + - * / % ^ and "
      "parentheses, e.g. (2+3)*7.\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"expr\":"
      "{\"type\":\"string\",\"description\":\"The expression, e.g. 6*7.\"}},\"required\":[\"expr\"]}}";
  pdk_output(d, sizeof d - 1);
  return 0;
}

EXPORT("handle_tool_call") int32_t handle_tool_call(void) {
  size_t n = pdk_input((uint8_t *)args, sizeof args);
  pdk_buf out = {out_data, 0, sizeof out_data, 0};
  int len = n > sizeof args ? -2 : json_get_string(args, n, "expr", expr, sizeof expr);
  if (len == -2 || len > (int)sizeof expr) {
    buf_puts(&out, "{\"content\":\"calc: the expression is longer than 4096 characters.\",\"is_error\":true}");
    pdk_output(out.data, out.len);
    return 0;
  }
  if (len < 0) {
    buf_puts(&out, "{\"content\":\"calc needs a string argument \\\"expr\\\", e.g. {\\\"expr\\\": \\\"6*7\\\"}.\","
                   "\"is_error\":true}");
    pdk_output(out.data, out.len);
    return 0;
  }
  parser p = {expr, 0, len, 0, 0, 0};
  double v = parse_sum(&p);
  skip_spaces(&p);
  if (!p.error && p.pos < p.len) fail(&p, "unexpected character");
  if (p.error) {
    char message[256];
    pdk_buf m = {message, 0, sizeof message, 0};
    buf_puts(&m, "calc: ");
    buf_puts(&m, p.error);
    buf_puts(&m, " at position ");
    buf_uint(&m, (uint64_t)p.error_pos + 1);
    if (p.error_pos < p.len) {
      buf_puts(&m, " ('");
      buf_put(&m, &expr[p.error_pos], 1);
      buf_puts(&m, "')");
    }
    buf_puts(&out, "{\"content\":");
    buf_json_string(&out, m.data, m.len);
    buf_puts(&out, ",\"is_error\":true}");
  } else {
    char number[64];
    pdk_buf num = {number, 0, sizeof number, 0};
    buf_number(&num, v);
    buf_puts(&out, "{\"content\":");
    buf_json_string(&out, num.data, num.len);
    buf_puts(&out, ",\"is_error\":false}");
  }
  pdk_output(out.data, out.len);
  return 0;
}
