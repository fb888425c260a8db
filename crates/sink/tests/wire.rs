use relay_sink::{encode, HeaderStyle, WireMode};
use relay_testkit::fixtures;

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn structured_is_the_spooled_json_untouched() {
    let msg = fixtures::message(0, fixtures::sample("post.create", "2244994945"));
    for style in [
        HeaderStyle::Kafka,
        HeaderStyle::Nats,
        HeaderStyle::Amqp,
        HeaderStyle::Amqp1,
    ] {
        let enc = encode(&msg, WireMode::Structured, style);
        assert_eq!(enc.body, msg.json);
        assert_eq!(enc.content_type, "application/cloudevents+json");
        // No attribute header: SDKs that auto-detect the mode would take one for binary.
        assert!(enc.headers.is_empty(), "{:?}", enc.headers);
    }
}

#[test]
fn binary_has_data_body_and_attribute_headers() {
    let env = fixtures::sample("post.create", "2244994945");
    let msg = fixtures::message(0, env);
    let enc = encode(&msg, WireMode::Binary, HeaderStyle::Kafka);
    assert_eq!(enc.content_type, "application/json");
    // The body is exactly the `data` member of the spooled JSON.
    let full: serde_json::Value = serde_json::from_slice(&msg.json).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&enc.body).unwrap();
    assert_eq!(body, full["data"]);
    let text = std::str::from_utf8(&enc.body).unwrap();
    assert!(text.starts_with("{\"payload\":"), "{text}");
    assert!(std::str::from_utf8(&msg.json).unwrap().contains(text));

    let h = &enc.headers;
    assert_eq!(header(h, "ce_specversion"), Some("1.0"));
    assert_eq!(
        header(h, "ce_id"),
        Some("2244994945:post.create:1924465506158878979")
    );
    assert_eq!(
        header(h, "ce_source"),
        Some("/x/account-activity/webhook/prod-app")
    );
    assert_eq!(header(h, "ce_type"), Some("post.create"));
    assert_eq!(header(h, "ce_subject"), Some("2244994945"));
    assert_eq!(header(h, "ce_time"), Some("2025-05-19T14:01:46Z"));
    // datacontenttype travels as the message's content type, not as a header.
    assert_eq!(header(h, "ce_datacontenttype"), None);
    assert_eq!(enc.content_type, "application/json");
    assert_eq!(header(h, "ce_actorid"), Some("2244994945"));
    assert_eq!(
        header(h, "ce_targetid"),
        None,
        "absent attribute, no header"
    );
    assert_eq!(header(h, "ce_objectid"), Some("1924465506158878979"));
    assert_eq!(header(h, "ce_ingress"), Some("webhook"));
    assert_eq!(header(h, "ce_xformat"), Some("aaa"));
    assert_eq!(h.len(), 10);
    // The time header matches the JSON's `time` string.
    assert_eq!(full["time"].as_str(), header(h, "ce_time"));

    let amqp = encode(&msg, WireMode::Binary, HeaderStyle::Amqp);
    assert_eq!(header(&amqp.headers, "ce-type"), Some("post.create"));
    let amqp1 = encode(&msg, WireMode::Binary, HeaderStyle::Amqp1);
    assert_eq!(
        header(&amqp1.headers, "cloudEvents_type"),
        Some("post.create")
    );
    let nats = encode(&msg, WireMode::Binary, HeaderStyle::Nats);
    assert_eq!(header(&nats.headers, "ce-subject"), Some("2244994945"));
}

#[test]
fn fractional_time_matches_json() {
    let mut env = fixtures::sample("like.create", "1");
    env.time += chrono::Duration::milliseconds(123);
    let msg = fixtures::message(0, env);
    let full: serde_json::Value = serde_json::from_slice(&msg.json).unwrap();
    let enc = encode(&msg, WireMode::Binary, HeaderStyle::Kafka);
    assert_eq!(full["time"].as_str(), header(&enc.headers, "ce_time"));
}

#[test]
fn dead_letter_is_its_json_in_both_modes() {
    let msg = fixtures::dead_letter(0, b"not json {", "body is not JSON: eof");
    for mode in [WireMode::Structured, WireMode::Binary] {
        let enc = encode(&msg, mode, HeaderStyle::Kafka);
        assert_eq!(enc.body, msg.json);
        assert_eq!(enc.content_type, "application/json");
        assert_eq!(header(&enc.headers, "ce_id"), Some(msg.id()));
        assert!(msg.id().starts_with("deadletter:"));
        assert_eq!(
            header(&enc.headers, "ce_deadletterreason"),
            Some("body is not JSON: eof")
        );
    }
}

#[test]
fn nats_header_values_are_percent_encoded_as_the_binding_requires() {
    let msg = fixtures::dead_letter(0, b"x", "line one\r\nline \"two\" 100% é");
    let enc = encode(&msg, WireMode::Structured, HeaderStyle::Nats);
    assert_eq!(
        header(&enc.headers, "ce-deadletterreason"),
        Some("line%20one%0D%0Aline%20%22two%22%20100%25%20%C3%A9")
    );
    // A source holding `%C3%A9` keeps it: the `%` is encoded, so a conforming reader
    // decodes back exactly the attribute.
    let mut env = fixtures::sample("like.create", "1");
    env.source = "/x/caf%C3%A9".into();
    let enc = encode(
        &fixtures::message(0, env),
        WireMode::Binary,
        HeaderStyle::Nats,
    );
    assert_eq!(header(&enc.headers, "ce-source"), Some("/x/caf%25C3%25A9"));
    // Other bindings carry the value as it is.
    let enc = encode(&msg, WireMode::Structured, HeaderStyle::Kafka);
    assert_eq!(
        header(&enc.headers, "ce_deadletterreason"),
        Some("line one\r\nline \"two\" 100% é")
    );
}

#[test]
fn wire_mode_config_names() {
    #[derive(serde::Deserialize)]
    struct C {
        #[serde(default)]
        wire_mode: WireMode,
    }
    let c: C = serde_json::from_str("{}").unwrap();
    assert_eq!(c.wire_mode, WireMode::Structured);
    let c: C = serde_json::from_str(r#"{"wire_mode":"binary"}"#).unwrap();
    assert_eq!(c.wire_mode, WireMode::Binary);
    assert!(serde_json::from_str::<C>(r#"{"wire_mode":"Binary"}"#).is_err());
}
