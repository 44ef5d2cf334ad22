//! Channel adapter for Slack's Events API.
//!
//! parse_incoming: an Events API request body →
//!   - `url_verification`: skipped, with `respond: {"challenge": ...}`, which the host sends back as
//!     the HTTP answer (Slack's handshake when the Request URL is saved);
//!   - `event_callback` with a `message` or `app_mention` from a user: a message. `team` is the
//!     workspace (`team_id`), `account` the app (`api_app_id`), `peer` the channel and the thread
//!     (`<channel>:<thread_ts>`, the message's own `ts` when it starts no thread), so each thread is
//!     its own conversation; `sender` is the user; `update_id` the `event_id`, which Slack's retries
//!     repeat;
//!   - anything else (bot messages, edits, joins, other subtypes and events): skipped.
//! format_outgoing: a reply → `POST /chat.postMessage` into the same channel and thread, marked
//! `"auth": "bearer"` so the host adds the bot token; this plugin never sees it.

const std = @import("std");
const x = @import("zig/extism_pdk.zig");
const chunks = @import("zig/chunks.zig");
const json = @import("zig/json.zig");
const str = json.str;
const obj = json.obj;

const Value = std.json.Value;

// Slack truncates a message's text past 40,000 characters and asks for at most 4,000 for a
// readable message: longer replies go out as several messages in the same thread.
const max_units = 4000;

const Challenge = struct { challenge: []const u8 };
const Skip = struct { skip: bool = true, reason: []const u8, update_id: ?[]const u8 = null, respond: ?Challenge = null };
const Normalized = struct {
    content: []const u8,
    account: ?[]const u8,
    team: ?[]const u8,
    peer: []const u8,
    sender: []const u8,
    message_id: []const u8,
    update_id: ?[]const u8,
};

export fn describe() i32 {
    return x.outputJson(.{
        .type = "channel_adapter",
        .name = "slack",
        .description = "Slack Events API: messages and app mentions in, chat.postMessage out (in the thread).",
        .auth = "slack_signature",
    });
}

/// The mentions of the app's own bot users (`<@U…>`), from the envelope's `authorizations`.
fn appMentions(envelope: std.json.ObjectMap) []const []const u8 {
    var found: std.ArrayList([]const u8) = .empty;
    const list = envelope.get("authorizations") orelse return found.items;
    if (list != .array) return found.items;
    for (list.array.items) |item| {
        const auth = obj(item) orelse continue;
        const user = str(auth, "user_id") orelse continue;
        const mention = std.fmt.allocPrint(x.allocator, "<@{s}>", .{user}) catch continue;
        found.append(x.allocator, mention) catch continue;
    }
    return found.items;
}

/// `text` without the app's own mentions, trimmed: "<@U0BOT> hi" → "hi".
fn withoutMentions(text: []const u8, mentions: []const []const u8) []const u8 {
    var out = text;
    for (mentions) |mention| out = std.mem.replaceOwned(u8, x.allocator, out, mention, "") catch out;
    return std.mem.trim(u8, out, " ");
}

fn mentionsAny(text: []const u8, mentions: []const []const u8) bool {
    for (mentions) |mention| if (std.mem.indexOf(u8, text, mention) != null) return true;
    return false;
}

export fn parse_incoming() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const root = std.json.parseFromSliceLeaky(Value, x.allocator, raw, .{}) catch |err|
        return x.fail("not a Slack Events API request ({s}): expected a JSON object", .{@errorName(err)});
    const envelope = obj(root) orelse return x.fail("not a Slack Events API request: expected a JSON object", .{});
    const kind = str(envelope, "type") orelse return x.fail("not a Slack Events API request: no \"type\"", .{});

    if (std.mem.eql(u8, kind, "url_verification")) {
        const challenge = str(envelope, "challenge") orelse return x.fail("url_verification without a challenge", .{});
        return x.outputJson(Skip{ .reason = "url_verification", .respond = .{ .challenge = challenge } });
    }
    const event_id = str(envelope, "event_id");
    if (!std.mem.eql(u8, kind, "event_callback"))
        return x.outputJson(Skip{ .reason = "not an event callback", .update_id = event_id });
    const event = obj(envelope.get("event")) orelse return x.fail("event_callback without an event object", .{});
    const event_type = str(event, "type") orelse "";
    const is_mention = std.mem.eql(u8, event_type, "app_mention");
    if (!is_mention and !std.mem.eql(u8, event_type, "message"))
        return x.outputJson(Skip{ .reason = "not a message event", .update_id = event_id });
    if (event.get("subtype") != null)
        return x.outputJson(Skip{ .reason = "not a plain user message (it has a subtype)", .update_id = event_id });
    if (event.get("bot_id") != null)
        return x.outputJson(Skip{ .reason = "message from a bot", .update_id = event_id });
    const user = str(event, "user") orelse return x.outputJson(Skip{ .reason = "message without a user", .update_id = event_id });
    const text = str(event, "text") orelse return x.outputJson(Skip{ .reason = "message without text", .update_id = event_id });
    const channel = str(event, "channel") orelse return x.fail("message event without a channel", .{});
    const ts = str(event, "ts") orelse return x.fail("message event without a ts", .{});
    // A mention in a channel also arrives as an app_mention event: answer that one only. (Slack
    // sends no app_mention for direct messages.)
    const channel_type = str(event, "channel_type") orelse "";
    const mentions = appMentions(envelope);
    if (!is_mention and !std.mem.eql(u8, channel_type, "im") and mentionsAny(text, mentions))
        return x.outputJson(Skip{ .reason = "mentions the app: answered through its app_mention event", .update_id = event_id });

    const thread = str(event, "thread_ts") orelse ts;
    const peer = std.fmt.allocPrint(x.allocator, "{s}:{s}", .{ channel, thread }) catch return x.fail("out of memory", .{});
    return x.outputJson(Normalized{
        .content = withoutMentions(text, mentions),
        .account = str(envelope, "api_app_id"),
        .team = str(envelope, "team_id"),
        .peer = peer,
        .sender = user,
        .message_id = ts,
        .update_id = event_id,
    });
}

const Reply = struct { content: []const u8, peer: []const u8 };
const PostMessage = struct { channel: []const u8, text: []const u8, thread_ts: ?[]const u8 };
const Request = struct { method: []const u8 = "POST", path: []const u8 = "/chat.postMessage", auth: []const u8 = "bearer", json: PostMessage };

export fn format_outgoing() i32 {
    const raw = x.input() catch return x.fail("out of memory", .{});
    const reply = x.parseInput(Reply, raw) catch |err|
        return x.fail("bad reply ({s}): expected {{\"content\": str, \"peer\": \"<channel>:<thread_ts>\"}}", .{@errorName(err)});
    var channel = reply.peer;
    var thread: ?[]const u8 = null;
    if (std.mem.indexOfScalar(u8, reply.peer, ':')) |colon| {
        channel = reply.peer[0..colon];
        thread = reply.peer[colon + 1 ..];
    }
    if (channel.len == 0) return x.fail("bad reply: the peer names no channel", .{});
    const pieces = chunks.split(x.allocator, reply.content, max_units) catch return x.fail("out of memory", .{});
    const requests = x.allocator.alloc(Request, pieces.len) catch return x.fail("out of memory", .{});
    for (pieces, requests) |piece, *request| {
        request.* = .{ .json = .{ .channel = channel, .text = piece, .thread_ts = thread } };
    }
    if (requests.len == 1) return x.outputJson(requests[0]);
    return x.outputJson(requests);
}
