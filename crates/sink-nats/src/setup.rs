//! The JetStream stream at connect: created when it does not exist; an existing one is the
//! property of whoever made it, checked and left as it is (`update_existing` overrides).
//!
//! The check that matters is whether the stream captures what the sink publishes: every
//! subject the template can render (one sample per taxonomy type) and the dead-letter
//! subject. A stream that does not would answer every publish with "no responders" and the
//! records would wait in the spool with no clear reason; the sink refuses to connect
//! instead, naming the subject and the stream's subjects. Every other difference from
//! `[sinks.stream]` (storage, retention, max age, a shorter duplicate window, other
//! subjects) is a warning in the log.

use super::*;

use async_nats::jetstream::ErrorCode;

/// The stream as `[sinks.stream]` describes it.
pub(crate) fn wanted(setup: &StreamSetup) -> stream::Config {
    stream::Config {
        name: setup.name.clone(),
        subjects: setup.subjects.clone(),
        storage: match setup.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        retention: match setup.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::Interest => stream::RetentionPolicy::Interest,
            Retention::Workqueue => stream::RetentionPolicy::WorkQueue,
        },
        max_age: setup.max_age,
        duplicate_window: setup.duplicate_window,
        ..Default::default()
    }
}

/// Creates the stream if it does not exist; checks an existing one (see the module docs).
pub(crate) async fn ensure(
    js: &jetstream::Context,
    sink: &str,
    setup: &StreamSetup,
    routing: &Routing,
) -> Result<(), NatsSinkError> {
    let err = |detail: String| NatsSinkError::Stream {
        sink: sink.to_owned(),
        stream: setup.name.clone(),
        detail,
    };
    let config = wanted(setup);
    if setup.update_existing {
        js.create_or_update_stream(config.clone())
            .await
            .map_err(|e| err(format!("cannot create or update it: {e}")))?;
        tracing::info!(sink, stream = %setup.name, "JetStream stream created or updated (update_existing)");
        return Ok(());
    }
    let existing = match js.get_stream(&setup.name).await {
        Ok(s) => s.cached_info().config.clone(),
        Err(e) if jetstream_code(&e) == Some(ErrorCode::STREAM_NOT_FOUND) => {
            match js.create_stream(config.clone()).await {
                Ok(_) => {
                    tracing::info!(sink, stream = %setup.name, "JetStream stream created");
                    return Ok(());
                }
                // Another member created it between the look-up and the create.
                Err(e) if create_code(&e) == Some(ErrorCode::STREAM_NAME_EXIST) => js
                    .get_stream(&setup.name)
                    .await
                    .map_err(|e| err(format!("cannot read it: {e}")))?
                    .cached_info()
                    .config
                    .clone(),
                Err(e) => return Err(err(format!("cannot create it: {e}"))),
            }
        }
        Err(e) => return Err(err(format!("cannot read it: {e}"))),
    };
    if let Some(subject) = uncaptured(&existing.subjects, routing) {
        return Err(err(format!(
            "it exists and its subjects {:?} do not capture {subject:?}, which this sink \
             publishes to: add a subject to the stream, or set `update_existing = true` to \
             have the relay overwrite its configuration",
            existing.subjects
        )));
    }
    for difference in differences(&config, &existing) {
        tracing::warn!(sink, stream = %setup.name, "existing JetStream stream left as it is: {difference}");
    }
    tracing::info!(sink, stream = %setup.name, "JetStream stream exists and captures the sink's subjects");
    Ok(())
}

fn jetstream_code(e: &jetstream::context::GetStreamError) -> Option<ErrorCode> {
    match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(j) => Some(j.error_code()),
        _ => None,
    }
}

fn create_code(e: &jetstream::context::CreateStreamError) -> Option<ErrorCode> {
    match e.kind() {
        jetstream::context::CreateStreamErrorKind::JetStream(j) => Some(j.error_code()),
        _ => None,
    }
}

/// A subject the sink publishes to that none of `patterns` captures (`None`: all are).
pub(crate) fn uncaptured(patterns: &[String], routing: &Routing) -> Option<String> {
    samples(routing)
        .into_iter()
        .find(|s| !patterns.iter().any(|p| subject_matches(p, s)))
}

/// The dead-letter subject and the template rendered for every taxonomy type (the one
/// attribute whose values are known in advance; the others get a sample value).
fn samples(routing: &Routing) -> Vec<String> {
    use relay_envelope::taxonomy::{OTHER_TYPES, XAA_TYPES};
    use relay_sink::Attr;
    let mut out = vec![routing.deadletter_subject.clone()];
    for ty in XAA_TYPES.iter().chain(OTHER_TYPES.iter()) {
        let rendered = routing.subject.render_lookup(|a| match a {
            Attr::Type => Some(ty),
            Attr::Ingress => Some("webhook"),
            Attr::Source => Some("/x/activity"),
            Attr::Subject | Attr::ActorId | Attr::TargetId | Attr::ObjectId => Some("1"),
        });
        out.push(sanitize_tokens(rendered));
    }
    out
}

/// NATS subject matching: `*` matches one token, `>` (last) one or more.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What `[sinks.stream]` asks for that the existing stream does not have.
fn differences(wanted: &stream::Config, existing: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if wanted.subjects != existing.subjects {
        out.push(format!(
            "subjects {:?} (configured {:?})",
            existing.subjects, wanted.subjects
        ));
    }
    if wanted.storage != existing.storage {
        out.push(format!(
            "storage {:?} (configured {:?})",
            existing.storage, wanted.storage
        ));
    }
    if wanted.retention != existing.retention {
        out.push(format!(
            "retention {:?} (configured {:?})",
            existing.retention, wanted.retention
        ));
    }
    if wanted.max_age != existing.max_age {
        out.push(format!(
            "max_age {:?} (configured {:?})",
            existing.max_age, wanted.max_age
        ));
    }
    if existing.duplicate_window < wanted.duplicate_window {
        out.push(format!(
            "duplicate_window {:?} is shorter than the configured {:?}: a record re-sent \
             after that (a lost ack, a restart) is stored twice",
            existing.duplicate_window, wanted.duplicate_window
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_as_nats_does() {
        assert!(subject_matches("x.activity.>", "x.activity.1.post.create"));
        assert!(!subject_matches("x.activity.>", "x.activity"));
        assert!(subject_matches("x.*.deadletter", "x.activity.deadletter"));
        assert!(!subject_matches("x.*", "x.activity.deadletter"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn a_stream_must_capture_every_type_and_the_dead_letters() {
        let cfg = NatsSinkConfig {
            url: "nats://127.0.0.1:4222".into(),
            subject: "ev.{subject}.{type}".into(),
            deadletter_subject: "dl.events".into(),
            ..NatsSinkConfig::default()
        };
        let (routing, _) = cfg.routing("t").unwrap();
        assert_eq!(
            uncaptured(&["ev.>".into(), "dl.events".into()], &routing),
            None
        );
        assert_eq!(
            uncaptured(&["ev.>".into()], &routing),
            Some("dl.events".into())
        );
        // Two tokens per type (`post.create`): `ev.*.*` misses none of the 2-token types but
        // a one-token one would be missed; `ev.*.post.*` misses the likes.
        let missed = uncaptured(&["ev.*.post.*".into(), "dl.events".into()], &routing);
        assert!(missed.is_some_and(|s| s.starts_with("ev.1.")));
    }
}
