//! Splitting a reply for platforms that cap a message's length, between characters, never inside one.

const std = @import("std");

/// The end (a byte offset) of the longest piece of `text` from `start` that fits in `max_units`
/// UTF-16 code units. UTF-16 units are never fewer than characters, so a platform that counts
/// characters accepts the piece too.
pub fn nextChunkEnd(text: []const u8, start: usize, max_units: usize) usize {
    var i = start;
    var units: usize = 0;
    while (i < text.len) {
        const len = std.unicode.utf8ByteSequenceLength(text[i]) catch 1;
        const width: usize = if (len == 4) 2 else 1;
        if (units + width > max_units) break;
        units += width;
        i = @min(text.len, i + len);
    }
    return i;
}

/// `text` cut into pieces of at most `max_units` UTF-16 units each; an empty text is one empty piece.
pub fn split(allocator: std.mem.Allocator, text: []const u8, max_units: usize) ![]const []const u8 {
    var pieces: std.ArrayList([]const u8) = .empty;
    var start: usize = 0;
    while (start < text.len or pieces.items.len == 0) {
        const end = nextChunkEnd(text, start, max_units);
        try pieces.append(allocator, text[start..end]);
        start = end;
    }
    return pieces.items;
}
