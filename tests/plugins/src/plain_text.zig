//! Test plug-in without describe, written in Zig: the export `shout` upper-cases its raw input.
//! The operator declares its tool.
const std = @import("std");

extern "extism:host/env" fn input_length() u64;
extern "extism:host/env" fn input_load_u8(offs: u64) u8;
extern "extism:host/env" fn alloc(len: u64) u64;
extern "extism:host/env" fn store_u8(offs: u64, value: u8) void;
extern "extism:host/env" fn output_set(offs: u64, len: u64) void;

export fn shout() i32 {
    const n = input_length();
    const out = alloc(n);
    var i: u64 = 0;
    while (i < n) : (i += 1) {
        store_u8(out + i, std.ascii.toUpper(input_load_u8(i)));
    }
    output_set(out, n);
    return 0;
}
