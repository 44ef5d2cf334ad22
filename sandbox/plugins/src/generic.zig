//! Channel adapter for exoclaw's generic webhook shape, for any system that can POST JSON.
//!
//! In:  {"id"?, "type"? = "message", "account", "peer", "text", "sender"?, "guild"?, "team"?, "message_id"?}
//!      (`sender`, who wrote the message, defaults to `peer`)
//! Out: POST to the channel's api_base_url with {"account", "peer", "text", "in_reply_to"?},
//!      signed by the host like the incoming requests (`"sign": true`).
//! Every identifier is a string; `id` is what retries are deduplicated by.

const std = @import("std");
const x = @import("zig/extism_pdk.zig");

const Incoming = struct {
    id: ?[]const u8 = null,
    type: []const u8 = "message",
    account: []const u8 = "",
    peer: []const u8,
    text: []const u8,
    sender: ?[]const u8 = null,
    guild: ?[]const u8 = null,
    team: ?[]const u8 = null,
    message_id: ?[]const u8 = null,
};

const Normalized = struct {
    content: []const u8,
    account: []const u8,
    peer: []const u8,
    sender: []const u8,
    guild: ?[]const u8,
    team: ?[]const u8,
    message_id: ?[]const u8,
    update_id: ?[]const u8,
};

const Typed = struct { id: ?[]const u8 = null, type: []const u8 = "message" };

export fn describe() i32 {
    return x.outputJson(.{
        .type = "channel_adapter",
        .name = "generic",
        .description = "exoclaw's generic JSON webhook: text messages in, a signed JSON POST out.",
        .auth = "hmac_sha256",
    });
}

export fn parse_incoming() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    // Events other than messages may carry any fields, so look at the type before the rest.
    const typed = x.parseInput(Typed, raw) catch |err|
        return x.fail("not a generic webhook event ({s}): expected an object with string fields", .{@errorName(err)});
    if (!std.mem.eql(u8, typed.type, "message"))
        return x.outputJson(.{ .skip = true, .reason = "not a message event", .update_id = typed.id });
    const in = x.parseInput(Incoming, raw) catch |err|
        return x.fail("not a generic message ({s}): expected {{\"peer\": str, \"text\": str, \"account\"?: str, \"id\"?: str}}", .{@errorName(err)});
    return x.outputJson(Normalized{
        .content = in.text,
        .account = in.account,
        .peer = in.peer,
        .sender = in.sender orelse in.peer,
        .guild = in.guild,
        .team = in.team,
        .message_id = in.message_id,
        .update_id = in.id,
    });
}

const Reply = struct {
    content: []const u8,
    account: []const u8 = "",
    peer: []const u8,
    reply_to: ?[]const u8 = null,
};

export fn format_outgoing() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const reply = x.parseInput(Reply, raw) catch |err|
        return x.fail("bad reply ({s}): expected {{\"content\": str, \"peer\": str, \"account\"?: str, \"reply_to\"?: str}}", .{@errorName(err)});
    return x.outputJson(.{
        .method = "POST",
        .path = "",
        .sign = true,
        .json = .{
            .account = reply.account,
            .peer = reply.peer,
            .text = reply.content,
            .in_reply_to = reply.reply_to,
        },
    });
}
