//! The few Extism kernel functions a freestanding plugin needs, and JSON in and out.
//!
//! Every call runs in a fresh instance, so memory is never freed: the wasm allocator only grows
//! until the call ends, bounded by the grant's memory limit.

const std = @import("std");

extern "extism:host/env" fn input_length() u64;
extern "extism:host/env" fn input_load_u64(offset: u64) u64;
extern "extism:host/env" fn input_load_u8(offset: u64) u8;
extern "extism:host/env" fn alloc(length: u64) u64;
extern "extism:host/env" fn store_u8(offset: u64, value: u8) void;
extern "extism:host/env" fn store_u64(offset: u64, value: u64) void;
extern "extism:host/env" fn output_set(offset: u64, length: u64) void;
extern "extism:host/env" fn error_set(offset: u64) void;

pub const allocator = std.heap.wasm_allocator;

pub fn input() ![]u8 {
    const n: usize = @intCast(input_length());
    const buf = try allocator.alloc(u8, n);
    var i: usize = 0;
    // Eight bytes per kernel call: a 1 MiB body would otherwise take a million calls.
    while (i + 8 <= n) : (i += 8) {
        std.mem.writeInt(u64, buf[i..][0..8], input_load_u64(i), .little);
    }
    while (i < n) : (i += 1) buf[i] = input_load_u8(i);
    return buf;
}

fn toKernel(bytes: []const u8) u64 {
    const offset = alloc(bytes.len);
    var i: usize = 0;
    while (i + 8 <= bytes.len) : (i += 8) {
        store_u64(offset + i, std.mem.readInt(u64, bytes[i..][0..8], .little));
    }
    while (i < bytes.len) : (i += 1) store_u8(offset + i, bytes[i]);
    return offset;
}

pub fn output(bytes: []const u8) void {
    output_set(toKernel(bytes), bytes.len);
}

/// Sets the call's error message and returns the export's failure code.
pub fn fail(comptime fmt: []const u8, args: anytype) i32 {
    const msg = std.fmt.allocPrint(allocator, fmt, args) catch "out of memory";
    error_set(toKernel(msg));
    return 1;
}

/// Parses the call's input as `T`, ignoring fields the adapter does not use.
pub fn parseInput(comptime T: type, raw: []const u8) !T {
    return std.json.parseFromSliceLeaky(T, allocator, raw, .{ .ignore_unknown_fields = true });
}

/// Writes `value` as the call's output, leaving out null optional fields.
pub fn outputJson(value: anytype) i32 {
    const text = std.json.Stringify.valueAlloc(allocator, value, .{ .emit_null_optional_fields = false }) catch
        return fail("out of memory", .{});
    output(text);
    return 0;
}
