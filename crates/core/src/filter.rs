//! Per-sink type filters: `types = [...]` and `exclude_types = [...]` on a `[[sinks]]`
//! entry, glob patterns over the taxonomy (`dm.*`, `post.*.create`, `chat.*`).
//!
//! A record goes to the sink when its type matches one of `types` (or `types` is empty)
//! and none of `exclude_types`. `*` matches any run of characters (dots included, so
//! `chat.*` is every XChat event) and `?` one character. Dead letters always go: they carry
//! a body the relay could not read, so there is no type to filter on. A record filtered out
//! still advances the sink's cursor (it is done for that sink), and is counted in
//! `activity_relay_filtered_total{sink}`.

use relay_envelope::taxonomy;
use relay_sink::{Message, Payload};

/// The compiled filter of one sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeFilter {
    pub types: Vec<String>,
    pub exclude_types: Vec<String>,
}

/// Whether `pattern` matches `text` (`*` any run, `?` one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently stretched to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl TypeFilter {
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.exclude_types.is_empty()
    }

    /// Whether a record of type `ty` goes to the sink.
    pub fn admits_type(&self, ty: &str) -> bool {
        (self.types.is_empty() || self.types.iter().any(|p| glob(p, ty)))
            && !self.exclude_types.iter().any(|p| glob(p, ty))
    }

    pub fn admits(&self, m: &Message) -> bool {
        match &m.payload {
            Payload::Event(e) => self.admits_type(&e.event_type),
            Payload::DeadLetter(_) => true,
        }
    }

    /// Patterns that match no type of the taxonomy (most likely a typo): warnings for
    /// `run --check`.
    pub fn warnings(&self) -> Vec<String> {
        let all: Vec<&str> = taxonomy::XAA_TYPES
            .iter()
            .chain(taxonomy::OTHER_TYPES.iter())
            .copied()
            .collect();
        [
            ("types", &self.types),
            ("exclude_types", &self.exclude_types),
        ]
        .into_iter()
        .flat_map(|(key, pats)| pats.iter().map(move |p| (key, p)))
        .filter(|(_, p)| !all.iter().any(|t| glob(p, t)))
        .map(|(key, p)| format!("{key} pattern {p:?} matches no type of the taxonomy"))
        .collect()
    }

    /// A one-line summary for `run --check`: which taxonomy types the sink gets.
    pub fn summary(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let all: Vec<&str> = taxonomy::XAA_TYPES
            .iter()
            .chain(taxonomy::OTHER_TYPES.iter())
            .copied()
            .collect();
        let admitted: Vec<&str> = all
            .iter()
            .copied()
            .filter(|t| self.admits_type(t))
            .collect();
        let shown = if admitted.len() > 12 {
            format!("{}, ...", admitted[..12].join(", "))
        } else {
            admitted.join(", ")
        };
        Some(format!(
            "{} of {} taxonomy types ({shown}); types outside the taxonomy by the same patterns; dead letters always",
            admitted.len(),
            all.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("dm.*", "dm.sent"));
        assert!(glob("post.*.create", "post.reply.create"));
        assert!(!glob("post.*.create", "post.create"));
        assert!(glob("chat.*", "chat.conversation.join"));
        assert!(glob("*", "anything"));
        assert!(glob("dm.?ead", "dm.read"));
        assert!(!glob("dm.*", "dmx.sent"));
        assert!(!glob("like.create", "like.created"));
    }

    #[test]
    fn dms_and_xchat_to_their_own_sink() {
        let private = TypeFilter {
            types: vec!["dm.*".into(), "chat.*".into()],
            exclude_types: vec!["dm.indicate_typing".into()],
        };
        assert!(private.admits_type("dm.received"));
        assert!(private.admits_type("chat.sent"));
        assert!(!private.admits_type("dm.indicate_typing"));
        assert!(!private.admits_type("post.create"));
        let public = TypeFilter {
            types: vec![],
            exclude_types: vec!["dm.*".into(), "chat.*".into()],
        };
        assert!(public.admits_type("post.create"));
        assert!(!public.admits_type("dm.sent"));
        assert!(public.warnings().is_empty());
        let typo = TypeFilter {
            types: vec!["dms.*".into()],
            exclude_types: vec![],
        };
        assert_eq!(typo.warnings().len(), 1);
        assert!(private.summary().unwrap().starts_with("13 of 46"));
    }
}
