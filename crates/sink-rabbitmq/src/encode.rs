//! Pure: what AMQP's field types allow of routing keys and header values.

use super::*;

/// An AMQP short string (at most 255 bytes; cut at a char boundary if longer).
pub(crate) fn short(s: &str) -> ShortString {
    if s.len() <= 255 {
        return ShortString::from(s);
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}
