//! Reading fields of a parsed JSON value (std.json.Value) whose shape the platform does not promise.

const std = @import("std");

/// The string at `key`, or null when it is missing or not a string.
pub fn str(object: std.json.ObjectMap, key: []const u8) ?[]const u8 {
    const value = object.get(key) orelse return null;
    return switch (value) {
        .string => |s| s,
        else => null,
    };
}

/// The value as an object, or null when it is missing or not an object.
pub fn obj(value: ?std.json.Value) ?std.json.ObjectMap {
    const v = value orelse return null;
    return switch (v) {
        .object => |o| o,
        else => null,
    };
}
