//! Channel adapter for the Telegram Bot API.
//!
//! parse_incoming: an `Update` (the webhook body) → a normalized message, or `{"skip": true}` for
//! anything that is not a text message. format_outgoing: a reply → a `sendMessage` request. The path
//! carries a `{token}` placeholder that the host fills in, so this plugin never sees the bot token.

const std = @import("std");
const x = @import("zig/extism_pdk.zig");
const chunks = @import("zig/chunks.zig");

const Chat = struct { id: i64, type: []const u8 = "" };
const User = struct { id: i64, is_bot: bool = false };
const Message = struct {
    message_id: i64,
    chat: Chat,
    from: ?User = null,
    text: ?[]const u8 = null,
};
const Update = struct { update_id: i64, message: ?Message = null };

const Skip = struct { skip: bool = true, reason: []const u8, update_id: i64 };
const Normalized = struct {
    content: []const u8,
    account: []const u8 = "",
    peer: []const u8,
    sender: ?[]const u8 = null,
    message_id: i64,
    update_id: i64,
};

export fn describe() i32 {
    return x.outputJson(.{
        .type = "channel_adapter",
        .name = "telegram",
        .description = "Telegram Bot API: text messages in, sendMessage out.",
        .auth = "telegram_secret_token",
    });
}

export fn parse_incoming() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const update = x.parseInput(Update, raw) catch |err|
        return x.fail("not a Telegram Update ({s}): expected an object with an integer update_id", .{@errorName(err)});
    const message = update.message orelse
        return x.outputJson(Skip{ .reason = "not a message update", .update_id = update.update_id });
    const text = message.text orelse
        return x.outputJson(Skip{ .reason = "message without text", .update_id = update.update_id });
    if (message.from) |from| if (from.is_bot)
        return x.outputJson(Skip{ .reason = "message from a bot", .update_id = update.update_id });
    const peer = std.fmt.allocPrint(x.allocator, "{d}", .{message.chat.id}) catch return x.fail("out of memory", .{});
    const sender = if (message.from) |from|
        std.fmt.allocPrint(x.allocator, "{d}", .{from.id}) catch return x.fail("out of memory", .{})
    else
        null;
    return x.outputJson(Normalized{
        .content = text,
        .peer = peer,
        .sender = sender,
        .message_id = message.message_id,
        .update_id = update.update_id,
    });
}

const Reply = struct {
    content: []const u8,
    peer: []const u8,
    reply_to: ?std.json.Value = null,
};

const ReplyParameters = struct { message_id: i64, allow_sending_without_reply: bool = true };
const SendMessage = struct {
    chat_id: std.json.Value,
    text: []const u8,
    reply_parameters: ?ReplyParameters = null,
};
const Request = struct { method: []const u8 = "POST", path: []const u8, json: SendMessage };

// Telegram refuses texts longer than 4096 UTF-16 code units, so a longer reply goes out as
// several messages, split between characters; only the first one is marked as the reply.
const max_units = 4096;

export fn format_outgoing() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const reply = x.parseInput(Reply, raw) catch |err|
        return x.fail("bad reply ({s}): expected {{\"content\": str, \"peer\": str, \"reply_to\"?: int}}", .{@errorName(err)});
    // A numeric peer is a chat id; anything else is a @channelusername, which Telegram takes as a string.
    const chat_id: std.json.Value = if (std.fmt.parseInt(i64, reply.peer, 10)) |id| .{ .integer = id } else |_| .{ .string = reply.peer };
    const reply_to: ?i64 = if (reply.reply_to) |r| switch (r) {
        .integer => |n| n,
        .string => |s| std.fmt.parseInt(i64, s, 10) catch null,
        else => null,
    } else null;

    var requests: std.ArrayList(Request) = .empty;
    var start: usize = 0;
    while (start < reply.content.len or requests.items.len == 0) {
        const end = chunks.nextChunkEnd(reply.content, start, max_units);
        requests.append(x.allocator, .{
            .path = "/bot{token}/sendMessage",
            .json = .{
                .chat_id = chat_id,
                .text = reply.content[start..end],
                .reply_parameters = if (requests.items.len == 0 and reply_to != null) .{ .message_id = reply_to.? } else null,
            },
        }) catch return x.fail("out of memory", .{});
        start = end;
    }
    if (requests.items.len == 1) return x.outputJson(requests.items[0]);
    return x.outputJson(requests.items);
}
