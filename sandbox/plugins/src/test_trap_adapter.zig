//! Test-only channel adapter that traps: in parse_incoming when the text is "trap", and always in
//! format_outgoing. It shows that a crashing adapter fails one request or one run, never the server.

const std = @import("std");
const x = @import("extism.zig");

const Incoming = struct { id: ?[]const u8 = null, peer: []const u8, text: []const u8 };

export fn describe() i32 {
    return x.outputJson(.{ .type = "channel_adapter", .name = "test_trap_adapter", .auth = "hmac_sha256" });
}

export fn parse_incoming() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const in = x.parseInput(Incoming, raw) catch return x.fail("expected {{\"peer\": str, \"text\": str}}", .{});
    if (std.mem.eql(u8, in.text, "trap")) @trap();
    return x.outputJson(.{ .content = in.text, .account = "", .peer = in.peer, .update_id = in.id });
}

export fn format_outgoing() i32 {
    @trap();
}
