//! Channel adapter for Discord's Interactions endpoint (slash commands).
//!
//! parse_incoming: an Interaction (the request body) →
//!   - `PING` (type 1): skipped, with `respond: {"type": 1}` (PONG), which the host sends back as
//!     the HTTP answer;
//!   - an application command (type 2), e.g. `/ask text:...`: a message whose text is the command's
//!     first string option, with `respond: {"type": 5}` (a deferred response: Discord shows "thinking"
//!     until the reply edits it). `account` is the application, `guild` the server (none in a DM),
//!     `peer` the channel, `sender` the user, `update_id` the interaction id, and `reply_ref` the
//!     interaction token, which the host hands back to format_outgoing;
//!   - anything else (components, autocomplete, modals): skipped.
//! format_outgoing: a reply → a PATCH of the deferred response (`@original`) with the first 2,000
//! characters, and further parts as follow-up messages.

const std = @import("std");
const x = @import("zig/extism_pdk.zig");
const chunks = @import("zig/chunks.zig");
const json = @import("zig/json.zig");
const str = json.str;
const obj = json.obj;

const Value = std.json.Value;

const ping = 1;
const application_command = 2;
const string_option = 3;
const max_units = 2000;

const Hint = struct { content: []const u8, flags: i64 = 64 }; // 64: only the user who asked sees it
const Respond = struct { type: i64, data: ?Hint = null };
const Skip = struct { skip: bool = true, reason: []const u8, update_id: ?[]const u8 = null, respond: ?Respond = null };
const Normalized = struct {
    content: []const u8,
    account: []const u8,
    guild: ?[]const u8,
    peer: []const u8,
    sender: []const u8,
    update_id: []const u8,
    reply_ref: []const u8,
    respond: Respond = .{ .type = 5 },
};

export fn describe() i32 {
    return x.outputJson(.{
        .type = "channel_adapter",
        .name = "discord",
        .description = "Discord Interactions endpoint: slash commands in (deferred), the reply as an edit of the response.",
        .auth = "discord_ed25519",
    });
}

/// The value of the first string option, looking into subcommands (whose options nest) too.
fn firstString(options: ?Value) ?[]const u8 {
    const list = options orelse return null;
    if (list != .array) return null;
    for (list.array.items) |item| {
        const option = obj(item) orelse continue;
        const option_type = option.get("type") orelse continue;
        if (option_type == .integer and option_type.integer == string_option) {
            if (str(option, "value")) |value| return value;
        }
        if (firstString(option.get("options"))) |value| return value;
    }
    return null;
}

export fn parse_incoming() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const root = std.json.parseFromSliceLeaky(Value, x.allocator, raw, .{}) catch |err|
        return x.fail("not a Discord interaction ({s}): expected a JSON object", .{@errorName(err)});
    const interaction = obj(root) orelse return x.fail("not a Discord interaction: expected a JSON object", .{});
    const kind = interaction.get("type") orelse return x.fail("not a Discord interaction: no \"type\"", .{});
    if (kind != .integer) return x.fail("not a Discord interaction: \"type\" must be an integer", .{});
    const id = str(interaction, "id");
    if (kind.integer == ping) return x.outputJson(Skip{ .reason = "ping", .update_id = id, .respond = .{ .type = 1 } });
    if (kind.integer != application_command)
        return x.outputJson(Skip{ .reason = "not an application command", .update_id = id });

    const application = str(interaction, "application_id") orelse return x.fail("interaction without an application_id", .{});
    const token = str(interaction, "token") orelse return x.fail("interaction without a token", .{});
    const channel = str(interaction, "channel_id") orelse
        (if (obj(interaction.get("channel"))) |c| str(c, "id") else null) orelse
        return x.fail("interaction without a channel", .{});
    // In a server the user is inside `member`; in a DM it is `user`.
    const user = (if (obj(interaction.get("member"))) |m| obj(m.get("user")) else null) orelse
        obj(interaction.get("user")) orelse return x.fail("interaction without a user", .{});
    const sender = str(user, "id") orelse return x.fail("interaction user without an id", .{});
    const data = obj(interaction.get("data")) orelse return x.fail("application command without data", .{});
    const text = firstString(data.get("options")) orelse "";
    if (std.mem.trim(u8, text, " \t\r\n").len == 0) return x.outputJson(Skip{
        .reason = "command without text",
        .update_id = id,
        .respond = .{ .type = 4, .data = .{ .content = "Add what you want to ask after the command, e.g. /ask text:hello" } },
    });
    return x.outputJson(Normalized{
        .content = text,
        .account = application,
        .guild = str(interaction, "guild_id"),
        .peer = channel,
        .sender = sender,
        .update_id = id orelse return x.fail("interaction without an id", .{}),
        .reply_ref = token,
    });
}

const Reply = struct { content: []const u8, account: []const u8, reply_ref: ?[]const u8 = null };
// Nobody gets pinged by what the agent writes (@everyone, roles, users).
const AllowedMentions = struct { parse: []const []const u8 = &.{} };
const Message = struct { content: []const u8, allowed_mentions: AllowedMentions = .{} };
const Request = struct { method: []const u8, path: []const u8, json: Message };

export fn format_outgoing() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const reply = x.parseInput(Reply, raw) catch |err|
        return x.fail("bad reply ({s}): expected {{\"content\": str, \"account\": application id, \"reply_ref\": interaction token}}", .{@errorName(err)});
    const token = reply.reply_ref orelse return x.fail("bad reply: a Discord reply needs the interaction token as reply_ref", .{});
    const webhook = std.fmt.allocPrint(x.allocator, "/webhooks/{s}/{s}", .{ reply.account, token }) catch
        return x.fail("out of memory", .{});
    const original = std.fmt.allocPrint(x.allocator, "{s}/messages/@original", .{webhook}) catch
        return x.fail("out of memory", .{});
    const pieces = chunks.split(x.allocator, reply.content, max_units) catch return x.fail("out of memory", .{});
    const requests = x.allocator.alloc(Request, pieces.len) catch return x.fail("out of memory", .{});
    for (pieces, requests, 0..) |piece, *request, i| {
        request.* = if (i == 0)
            .{ .method = "PATCH", .path = original, .json = .{ .content = piece } }
        else
            .{ .method = "POST", .path = webhook, .json = .{ .content = piece } };
    }
    if (requests.len == 1) return x.outputJson(requests[0]);
    return x.outputJson(requests);
}
