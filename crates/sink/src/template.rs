//! Routing templates: `x.activity.{type}`, `{subject}`, `x.activity.{subject}.{type}`, …

use relay_envelope::Envelope;

/// What a placeholder renders as when the envelope lacks the attribute (or it is empty).
pub const MISSING: &str = "_";

/// An envelope attribute usable in a routing template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attr {
    Type,
    Subject,
    ActorId,
    TargetId,
    ObjectId,
    Ingress,
    Source,
}

impl Attr {
    /// Every attribute, in the order the spec lists them.
    pub const ALL: [Attr; 7] = [
        Attr::Type,
        Attr::Subject,
        Attr::ActorId,
        Attr::TargetId,
        Attr::ObjectId,
        Attr::Ingress,
        Attr::Source,
    ];

    /// The placeholder name (`type`, `subject`, `actorid`, …).
    pub fn name(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Subject => "subject",
            Attr::ActorId => "actorid",
            Attr::TargetId => "targetid",
            Attr::ObjectId => "objectid",
            Attr::Ingress => "ingress",
            Attr::Source => "source",
        }
    }

    /// The attribute of a placeholder name (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Attr> {
        Attr::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The attribute's value in `env`; `None` when absent.
    pub fn get(self, env: &Envelope) -> Option<&str> {
        match self {
            Attr::Type => Some(&env.event_type),
            Attr::Subject => Some(&env.subject),
            Attr::ActorId => env.actorid.as_deref(),
            Attr::TargetId => env.targetid.as_deref(),
            Attr::ObjectId => env.objectid.as_deref(),
            Attr::Ingress => Some(env.ingress.as_str()),
            Attr::Source => Some(&env.source),
        }
    }
}

/// Why a template string was rejected. Positions are byte offsets into the template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "template {template:?}: unknown placeholder {{{name}}} at byte {pos} \
         (allowed: {{type}} {{subject}} {{actorid}} {{targetid}} {{objectid}} {{ingress}} {{source}})"
    )]
    UnknownPlaceholder {
        template: String,
        name: String,
        pos: usize,
    },
    #[error("template {template:?}: '{{' at byte {pos} is not closed by '}}'")]
    Unclosed { template: String, pos: usize },
    #[error("template {template:?}: '}}' at byte {pos} has no matching '{{'")]
    Unmatched { template: String, pos: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Attr(Attr),
}

/// A parsed routing template: literal text with `{attr}` placeholders.
///
/// Placeholders: `{type}` `{subject}` `{actorid}` `{targetid}` `{objectid}` `{ingress}`
/// `{source}`. Any other `{name}`, a `{` without its `}` and a `}` without its `{` are parse
/// errors (there is no escape syntax: braces cannot appear literally). An attribute the
/// envelope lacks, or whose value is empty, renders as `_` ([`MISSING`]).
///
/// Rendering inserts attribute values as they are; a sink whose destination names have a
/// restricted alphabet (Kafka topics, NATS subjects) sanitizes with [`Template::render_with`].
///
/// In configuration a template is a plain string (serde `try_from = "String"`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses a template string.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices();
        while let Some((pos, c)) = rest.next() {
            match c {
                '{' => {
                    let start = pos + 1;
                    let mut end = None;
                    for (p, c) in rest.by_ref() {
                        match c {
                            '}' => {
                                end = Some(p);
                                break;
                            }
                            '{' => break,
                            _ => {}
                        }
                    }
                    let Some(end) = end else {
                        return Err(TemplateError::Unclosed {
                            template: text.to_owned(),
                            pos,
                        });
                    };
                    let name = &text[start..end];
                    let Some(attr) = Attr::from_name(name) else {
                        return Err(TemplateError::UnknownPlaceholder {
                            template: text.to_owned(),
                            name: name.to_owned(),
                            pos,
                        });
                    };
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Attr(attr));
                }
                '}' => {
                    return Err(TemplateError::Unmatched {
                        template: text.to_owned(),
                        pos,
                    })
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template {
            text: text.to_owned(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template is the empty string.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The placeholders, in order (repeats included).
    pub fn attrs(&self) -> impl Iterator<Item = Attr> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Attr(a) => Some(*a),
            Segment::Literal(_) => None,
        })
    }

    /// The literal text between placeholders, in order.
    pub fn literals(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Literal(l) => Some(l.as_str()),
            Segment::Attr(_) => None,
        })
    }

    /// Whether the template has no placeholder (renders the same for every envelope).
    pub fn is_constant(&self) -> bool {
        self.attrs().next().is_none()
    }

    /// Renders for an envelope; absent or empty attributes render as `_`.
    pub fn render(&self, env: &Envelope) -> String {
        self.render_with(env, |v, out| out.push_str(v))
    }

    /// Renders from any attribute lookup (for callers without an [`Envelope`] at hand);
    /// `None` or empty values render as `_`.
    pub fn render_lookup<'a>(&self, lookup: impl Fn(Attr) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Attr(a) => match lookup(*a) {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => out.push_str(MISSING),
                },
            }
        }
        out
    }

    /// Renders with each attribute value passed through `escape` (which appends the
    /// escaped value to its `String`); literals and the `_` for a missing value are
    /// appended as they are.
    pub fn render_with(&self, env: &Envelope, escape: impl Fn(&str, &mut String)) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Attr(a) => match a.get(env) {
                    Some(v) if !v.is_empty() => escape(v, &mut out),
                    _ => out.push_str(MISSING),
                },
            }
        }
        out
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

impl TryFrom<String> for Template {
    type Error = TemplateError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Template::parse(&s)
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.text
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
