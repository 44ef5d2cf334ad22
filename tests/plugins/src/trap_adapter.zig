//! Test-only channel adapter that traps: in parse_incoming when the body contains "trap", and always
//! in format_outgoing. It shows that a crashing adapter fails one request or one run, never the server.
//! Self-contained (no JSON parser): it only has to be a believable adapter until it crashes.

const std = @import("std");

extern "extism:host/env" fn input_length() u64;
extern "extism:host/env" fn input_load_u8(offset: u64) u8;
extern "extism:host/env" fn alloc(length: u64) u64;
extern "extism:host/env" fn store_u8(offset: u64, value: u8) void;
extern "extism:host/env" fn output_set(offset: u64, length: u64) void;

var buffer: [65536]u8 = undefined;

fn output(bytes: []const u8) i32 {
    const offset = alloc(bytes.len);
    for (bytes, 0..) |b, i| store_u8(offset + i, b);
    output_set(offset, bytes.len);
    return 0;
}

export fn describe() i32 {
    return output("{\"type\":\"channel_adapter\",\"name\":\"trap_adapter\",\"auth\":\"hmac_sha256\"}");
}

export fn parse_incoming() i32 {
    const n: usize = @intCast(@min(input_length(), buffer.len));
    for (0..n) |i| buffer[i] = input_load_u8(i);
    if (std.mem.indexOf(u8, buffer[0..n], "trap") != null) @trap();
    return output("{\"content\":\"hi\",\"peer\":\"p1\"}");
}

export fn format_outgoing() i32 {
    @trap();
}
